"""jaxdl: a JAX training framework in functional style.

Models are pure Flax Linen modules, one training step is one pure jitted function
(`jaxdl.step.train_step`), and data comes from TFDS without TensorFlow.
"""

__version__ = "0.1.0"

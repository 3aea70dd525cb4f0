"""jaxdl: a JAX training framework in functional style.

Models are pure Flax Linen modules, one training step is one pure jitted function
(`jaxdl.step.train_step`), and data comes from TFDS without TensorFlow.
"""

from jaxdl.distributed.xla_flags import apply_default_flags
from jaxdl.host_memory import keep_freed_memory

# Before anything imports jax's backend: the flags only take effect when XLA starts, and the
# allocator settings only for threads that have not allocated yet.
apply_default_flags()
keep_freed_memory()

__version__ = "0.1.0"

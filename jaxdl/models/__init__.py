"""The model zoo. Every model is a Flax Linen module called as
`model.apply(variables, images, train=...)` on NHWC images (or flat features) and returns logits.

Importing this package registers every family; find models with `names()` and build them with
`create(name, num_classes=..., **options)`. Options every conv model takes: `dtype` (computation
dtype; parameters stay float32) and `axis_name` (BatchNorm's pmap axis).
"""

# Imported for their side effect: each module registers its models.
from jaxdl.models import (  # noqa: F401
    airbench,
    alexnet,
    densenet,
    detection,
    fcn,
    generative,
    googlenet,
    inception_v3,
    lenet,
    linear,
    mlp,
    nin,
    resnet,
    sequence,
    squeezenet,
    vgg,
)
from jaxdl.models.registry import create, data_initializer, names, register

__all__ = ["create", "data_initializer", "names", "register"]

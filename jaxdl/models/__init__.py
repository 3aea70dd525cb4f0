"""The model zoo. Every model is a Flax Linen module called as
`model.apply(variables, images, train=...)` on NHWC images (or flat features) and returns logits.

Importing this package registers every family; find models with `names()` and build them with
`create(name, num_classes=..., **options)`.
"""

from jaxdl.models import linear, mlp  # noqa: F401  (imported to register their models)
from jaxdl.models.registry import create, names, register

__all__ = ["create", "names", "register"]

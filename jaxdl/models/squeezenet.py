"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016), torchvision's layout: 1,248,424 and 1,235,496
parameters at 224x224x3 with 1,000 classes. `squeezenet_cifar` is 1.1 with a 3x3 stride-1 stem
and no first pool for 32x32 input."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import Conv
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.fire import Fire
from jaxdl.nn.pool import MaxPool

# (squeeze, expand) per fire module (expand 1x1 = expand 3x3); "M" is a 3x3/2 ceil-mode pool.
FIRES_1_0 = (
    (16, 64),
    (16, 64),
    (32, 128),
    "M",
    (32, 128),
    (48, 192),
    (48, 192),
    (64, 256),
    "M",
    (64, 256),
)
FIRES_1_1 = (
    (16, 64),
    (16, 64),
    "M",
    (32, 128),
    (32, 128),
    "M",
    (48, 192),
    (48, 192),
    (64, 256),
    (64, 256),
)


class SqueezeNet(nn.Module):
    """f32[B, H, W, 3] -> f32[B, num_classes]; the classifier is dropout, a 1x1 conv to the
    classes, ReLU and a global average pool (no dense layer)."""

    num_classes: int
    stem_features: int
    stem_kernel: int
    fires: Sequence[Any]
    stem_stride: int = 2
    stem_pool: bool = True
    dropout_rate: float = 0.5
    axis_name: str | None = None  # the pmap axis, for dropout masks
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(
            Conv(
                self.stem_features,
                self.stem_kernel,
                self.stem_stride,
                padding="VALID" if self.stem_stride > 1 else None,
                dtype=self.dtype,
                layers=self.layers,
            )(x)
        )
        if self.stem_pool:
            x = MaxPool(3, 2, ceil_mode=True, layers=self.layers)(x)
        for fire in self.fires:
            if fire == "M":
                x = MaxPool(3, 2, ceil_mode=True, layers=self.layers)(x)
            else:
                x = Fire(fire[0], fire[1], fire[1], dtype=self.dtype, layers=self.layers)(x)
        x = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(x)
        x = nn.relu(
            Conv(self.num_classes, 1, dtype=self.dtype, layers=self.layers, name="classifier")(x)
        )
        return jnp.mean(x, axis=(1, 2))


register(
    "squeezenet1_0",
    functools.partial(SqueezeNet, stem_features=96, stem_kernel=7, fires=FIRES_1_0),
)
register(
    "squeezenet1_1",
    functools.partial(SqueezeNet, stem_features=64, stem_kernel=3, fires=FIRES_1_1),
)
register(
    "squeezenet_cifar",
    functools.partial(
        SqueezeNet, stem_features=64, stem_kernel=3, fires=FIRES_1_1, stem_stride=1, stem_pool=False
    ),
)

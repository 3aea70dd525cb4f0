"""VGG (Simonyan & Zisserman 2015), torchvision's layout: configurations A (vgg11), B (vgg13),
D (vgg16), E (vgg19), with or without BatchNorm, and CIFAR variants with a one-layer head.

ImageNet counts at 224x224x3, 1,000 classes: vgg11 132,863,336; vgg13 133,047,848; vgg16
138,357,544; vgg19 143,667,240; vgg16_bn 138,365,992 (torchvision keeps the conv biases when it
adds BatchNorm, so BN adds 2 parameters per channel).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import BatchNorm, Conv
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.pool import MaxPool, adaptive_avg_pool

CONFIGS: dict[int, tuple] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ),
}


class VGG(nn.Module):
    """f32[B, H, W, 3] -> f32[B, num_classes]. `head` "imagenet": adaptive 7x7 pool and three
    dense layers (4096, 4096, classes) with dropout; "cifar": global pool and one dense layer
    (for 32x32 input the features are already 1x1x512); "small": flatten, dense 256, dropout,
    dense classes."""

    num_classes: int
    config: Sequence[Any]
    batch_norm: bool = False
    head: str = "imagenet"
    dropout_rate: float = 0.5
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for item in self.config:
            if item == "M":
                x = MaxPool(2, 2, layers=self.layers)(x)
                continue
            x = Conv(item, 3, dtype=self.dtype, layers=self.layers)(x)
            if self.batch_norm:
                x = BatchNorm(axis_name=self.axis_name, dtype=self.dtype, layers=self.layers)(
                    x, train
                )
            x = nn.relu(x)
        if self.head == "cifar":
            return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, axis=(1, 2)))
        if self.head == "small":
            x = nn.relu(nn.Dense(256, dtype=self.dtype)(x.reshape(x.shape[0], -1)))
            x = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(x)
            return nn.Dense(self.num_classes, dtype=self.dtype)(x)
        x = adaptive_avg_pool(x, (7, 7)).reshape(x.shape[0], -1)
        for width in (4096, 4096):
            x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
            x = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)


for _depth, _config in CONFIGS.items():
    register(f"vgg{_depth}", functools.partial(VGG, config=_config))
    register(f"vgg{_depth}_bn", functools.partial(VGG, config=_config, batch_norm=True))
    # CIFAR: BatchNorm and a single dense layer on the 1x1x512 features.
    register(
        f"vgg{_depth}_cifar",
        functools.partial(VGG, config=_config, batch_norm=True, head="cifar"),
    )

# A small VGG-style CIFAR network for the regularisation experiment: 16-16-M-32-32-M-64-64-M,
# then dense 256 on the 4x4x64 features (337,050 parameters for 10 classes). Plain by default;
# `batch_norm=True` and `dropout_rate` switch the two regularisers on.
SMALL_CONFIG = (16, 16, "M", 32, 32, "M", 64, 64, "M")
register("vgg_small", functools.partial(VGG, config=SMALL_CONFIG, head="small", dropout_rate=0.0))

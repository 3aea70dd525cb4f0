"""DenseNet (Huang et al. 2017): torchvision's densenet121 (7,978,856 parameters at
224x224x3, 1,000 classes) and DenseNet-BC for CIFAR (densenet_bc100_k12: 769,162 parameters)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import BatchNorm, Conv, ConvBN
from jaxdl.nn.dense_block import DenseBlock, Transition
from jaxdl.nn.pool import MaxPool


class DenseNet(nn.Module):
    """f32[B, H, W, 3] -> f32[B, num_classes]: stem, dense blocks separated by transitions that
    halve the channels (`compression`) and the resolution, final BN-ReLU, pool, dense.

    `stem` "imagenet": 7x7/2 conv-BN-ReLU to `stem_features` + 3x3/2 max pool; "cifar": one
    3x3 conv to `stem_features` (2 x growth in DenseNet-BC)."""

    num_classes: int
    block_sizes: Sequence[int]
    growth: int
    stem_features: int
    stem: str = "imagenet"
    bn_size: int = 4
    compression: float = 0.5
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        common = {"axis_name": self.axis_name, "dtype": self.dtype, "layers": self.layers}
        if self.stem == "imagenet":
            x = MaxPool(3, 2, padding=1, layers=self.layers)(
                ConvBN(self.stem_features, 7, 2, **common)(x, train)
            )
        else:
            x = Conv(self.stem_features, 3, use_bias=False, dtype=self.dtype, layers=self.layers)(x)
        for index, layers in enumerate(self.block_sizes):
            x = DenseBlock(layers, self.growth, self.bn_size, self.dropout_rate, **common)(x, train)
            if index < len(self.block_sizes) - 1:
                x = Transition(int(x.shape[-1] * self.compression), **common)(x, train)
        x = BatchNorm(**common)(x, train, relu=True)
        return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, axis=(1, 2)))


register(
    "densenet121",
    functools.partial(DenseNet, block_sizes=(6, 12, 24, 16), growth=32, stem_features=64),
)
# DenseNet-BC, depth 100, growth 12: (100 - 4) / 6 = 16 bottleneck layers per block.
register(
    "densenet_bc100_k12",
    functools.partial(
        DenseNet, block_sizes=(16, 16, 16), growth=12, stem_features=24, stem="cifar"
    ),
)

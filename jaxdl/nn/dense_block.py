"""DenseNet's dense block and transition (Huang et al. 2017), BC variant (bottleneck +
compression). NHWC."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.conv import BatchNorm, Conv
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.pool import AvgPool


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1(bn_size * growth)-BN-ReLU-conv3x3(growth), concatenated to the input:
    f32[B, H, W, C] -> f32[B, H, W, C + growth]."""

    growth: int
    bn_size: int = 4
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        bn = lambda: BatchNorm(axis_name=self.axis_name, dtype=self.dtype, layers=self.layers)
        y = Conv(
            self.bn_size * self.growth, 1, use_bias=False, dtype=self.dtype, layers=self.layers
        )(bn()(x, train, relu=True))
        y = Conv(self.growth, 3, use_bias=False, dtype=self.dtype, layers=self.layers)(
            bn()(y, train, relu=True)
        )
        if self.dropout_rate:
            y = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(y)
        return jnp.concatenate([x, y], axis=-1)


class DenseBlock(nn.Module):
    """`num_layers` DenseLayers: f32[B, H, W, C] -> f32[B, H, W, C + num_layers * growth]."""

    num_layers: int
    growth: int
    bn_size: int = 4
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for _ in range(self.num_layers):
            x = DenseLayer(
                self.growth,
                self.bn_size,
                self.dropout_rate,
                self.axis_name,
                self.dtype,
                self.layers,
            )(x, train)
        return x


class Transition(nn.Module):
    """BN-ReLU-conv1x1(features)-avgpool2: f32[B, H, W, C] -> f32[B, H/2, W/2, features]."""

    features: int
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.relu(
            BatchNorm(axis_name=self.axis_name, dtype=self.dtype, layers=self.layers)(x, train)
        )
        x = Conv(self.features, 1, use_bias=False, dtype=self.dtype, layers=self.layers)(x)
        return AvgPool(2)(x)

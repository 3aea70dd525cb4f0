"""LeNet-5 (LeCun et al. 1998): 6-16-120-84-10 with 5x5 convolutions on 32x32 input.

Parameter count 61,706 (61,470 weights + 236 biases). MNIST's 28x28 digits are padded to 32x32
by the first convolution, as in the paper's 20x20-digits-in-32x32 set-up. The defaults use ReLU
and max pooling, which train faster than the paper's scaled tanh and learned subsampling
(`act="tanh", pool="avg"` gives the classic form; the count is the same).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import Conv, activation
from jaxdl.nn.pool import AvgPool, MaxPool


class LeNet5(nn.Module):
    """f32[B, H, W, C] with H, W <= 32 -> f32[B, num_classes]."""

    num_classes: int = 10
    act: str = "relu"
    pool: str = "max"
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train
        act = activation(self.act)
        pool_layer = MaxPool if self.pool == "max" else AvgPool
        pool = lambda y: pool_layer(2, 2)(y)
        pad_h, pad_w = (32 - x.shape[1]) // 2, (32 - x.shape[2]) // 2
        x = Conv(
            6,
            5,
            padding=((pad_h, pad_h), (pad_w, pad_w)),
            dtype=self.dtype,
            layers=self.layers,
            name="c1",
        )(x)
        x = pool(act(x))
        x = pool(
            act(Conv(16, 5, padding="VALID", dtype=self.dtype, layers=self.layers, name="c3")(x))
        )
        x = act(Conv(120, 5, padding="VALID", dtype=self.dtype, layers=self.layers, name="c5")(x))
        x = x.reshape(x.shape[0], -1)
        x = act(nn.Dense(84, dtype=self.dtype, name="f6")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)


register("lenet5", LeNet5)

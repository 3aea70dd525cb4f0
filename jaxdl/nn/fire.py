"""SqueezeNet's fire module (Iandola et al. 2016): squeeze with 1x1, expand with parallel 1x1
and 3x3, concatenate. f32[B, H, W, C] -> f32[B, H, W, e1 + e3]. Biased convs, ReLU, no BN."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.conv import Conv


class Fire(nn.Module):
    squeeze: int
    expand1x1: int
    expand3x3: int
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = nn.relu(Conv(self.squeeze, 1, dtype=self.dtype, layers=self.layers)(x))
        e1 = nn.relu(Conv(self.expand1x1, 1, dtype=self.dtype, layers=self.layers)(s))
        e3 = nn.relu(Conv(self.expand3x3, 3, dtype=self.dtype, layers=self.layers)(s))
        return jnp.concatenate([e1, e3], axis=-1)

"""The Inception module of GoogLeNet (Szegedy et al. 2015): four parallel branches concatenated
on channels. f32[B, H, W, C] -> f32[B, H, W, c1 + c3 + c5 + pool_proj]."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.conv import ConvBN
from jaxdl.nn.pool import MaxPool


class Inception(nn.Module):
    """Branches: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> "5x5"; 3x3 max-pool -> 1x1 projection.

    `wide_kernel` is the kernel of the "5x5" branch. torchvision's GoogLeNet (and its published
    parameter count, 6,624,904) uses 3 there, a long-standing quirk kept for weight
    compatibility; the paper's 5 is available. Each conv is conv-BN-ReLU (BN eps 1e-3 in
    torchvision; the count does not depend on it).
    """

    c1: int
    c3_reduce: int
    c3: int
    c5_reduce: int
    c5: int
    pool_proj: int
    wide_kernel: int = 3
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = lambda f, k: ConvBN(
            f, k, axis_name=self.axis_name, dtype=self.dtype, layers=self.layers
        )
        b1 = conv(self.c1, 1)(x, train)
        b2 = conv(self.c3, 3)(conv(self.c3_reduce, 1)(x, train), train)
        b3 = conv(self.c5, self.wide_kernel)(conv(self.c5_reduce, 1)(x, train), train)
        b4 = conv(self.pool_proj, 1)(MaxPool(3, 1, padding=1, layers=self.layers)(x), train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)

"""airbench94's network (Keller Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single
GPU"): a 2x2 patch-whitening convolution whose weights come from the data and stay frozen,
three conv groups (conv, 2x2 max-pool, BatchNorm, GELU, conv, BatchNorm, GELU) of 64, 256 and
256 channels, a 3x3 max-pool and a bias-free linear classifier scaled by 1/9.

f32[B, 32, 32, 3] -> f32[B, num_classes]. 1,972,792 parameters for 10 classes, of which the
whitening kernel (288) and BatchNorm scales (1,152) are frozen by the training recipe
(`jaxdl.recipes.airbench94`). Convolutions start as identities on their first input-many
filters (dirac init) and PyTorch's default uniform init elsewhere, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import BatchNorm, Conv
from jaxdl.nn.pool import MaxPool


def torch_uniform(key, shape, dtype=jnp.float32):
    """PyTorch's default conv / linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = all
    but the last (output) axis."""
    fan_in = 1
    for size in shape[:-1]:
        fan_in *= size
    bound = 1 / fan_in**0.5
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def dirac_then_uniform(key, shape, dtype=jnp.float32):
    """[kh, kw, C, F]: the first min(C, F) filters pass channel i through unchanged (a 1 at
    the kernel centre), the rest are `torch_uniform`."""
    kh, kw, channels, features = shape
    kernel = torch_uniform(key, shape, dtype)
    identity = min(channels, features)
    dirac = jnp.zeros((kh, kw, channels, identity), dtype)
    dirac = dirac.at[kh // 2, kw // 2, jnp.arange(identity), jnp.arange(identity)].set(1)
    return kernel.at[..., :identity].set(dirac)


class ConvGroup(nn.Module):
    features: int
    bn_momentum: float
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = lambda: Conv(
            self.features, 3, padding="SAME", use_bias=False,
            kernel_init=dirac_then_uniform, dtype=self.dtype, layers=self.layers,
        )  # fmt: skip
        norm = lambda: BatchNorm(
            momentum=self.bn_momentum, epsilon=1e-12, dtype=self.dtype, layers=self.layers
        )
        x = MaxPool(2, 2, layers=self.layers)(conv()(x))
        x = nn.gelu(norm()(x, train), approximate=False)
        return nn.gelu(norm()(conv()(x), train), approximate=False)


class AirbenchNet(nn.Module):
    num_classes: int = 10
    widths: Sequence[int] = (64, 256, 256)
    whiten_kernel_size: int = 2
    bn_momentum: float = 0.6  # the running statistics keep 0.6 of their value per step
    scaling: float = 1 / 9
    dtype: Any = jnp.float32
    layers: str = "auto"
    # Once the recipe stops training the whitening bias (its kernel never trains), nothing
    # needs a gradient below the first group: True cuts it there, so the backward pass skips
    # the first convolution's input gradient (~6 % of a step), as PyTorch's requires_grad=False
    # does. The forward pass and every other gradient are unchanged.
    freeze_whitening: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        k = self.whiten_kernel_size
        x = Conv(
            2 * x.shape[-1] * k * k, k, padding="VALID", kernel_init=torch_uniform,
            dtype=self.dtype, layers=self.layers, name="whiten",
        )(x)  # fmt: skip
        x = nn.gelu(x, approximate=False)
        if self.freeze_whitening:
            x = jax.lax.stop_gradient(x)
        for width in self.widths:
            x = ConvGroup(width, self.bn_momentum, self.dtype, self.layers)(x, train)
        x = MaxPool(3, 3, layers=self.layers)(x).reshape(x.shape[0], -1)
        logits = nn.Dense(
            self.num_classes, use_bias=False, kernel_init=torch_uniform, dtype=self.dtype
        )(x)
        return logits * self.scaling


register("airbench94", AirbenchNet)

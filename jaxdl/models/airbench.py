"""airbench94's network (Keller Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single
GPU"): a 2x2 patch-whitening convolution whose weights come from the data and stay frozen,
three conv groups (conv, 2x2 max-pool, BatchNorm, GELU, conv, BatchNorm, GELU) of 64, 256 and
256 channels, a 3x3 max-pool and a bias-free linear classifier scaled by 1/9.

f32[B, 32, 32, 3] -> f32[B, num_classes]. 1,972,792 parameters for 10 classes, of which the
whitening kernel (288) and BatchNorm scales (1,152) are frozen by the training recipe
(`jaxdl.recipes.airbench94`). Convolutions start as identities on their first input-many
filters (dirac init) and PyTorch's default uniform init elsewhere, as in the reference.

`airbench_resnet` is the same network with a residual block in each group, as airbench96 and
the DAWNBench ResNet-9 have: after the downsampling conv, two convs whose output is added to
their input. 3,190,456 parameters for 10 classes; 1.4x airbench94's multiply-adds.
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


def whitening_kernel(images: jax.Array, kernel_size: int = 2, eps: float = 5e-4) -> jax.Array:
    """f32[k, k, C, 2 C k k] from normalised images f32[N, H, W, C]: the eigenvectors of the
    k x k patches' (uncentred) covariance, largest eigenvalue first, each scaled by
    1 / sqrt(eigenvalue + eps), then the same negated — a convolution whose outputs are the
    whitened patch coordinates, both signs (so the GELU after it loses nothing)."""
    n, h, w, c = images.shape
    k = kernel_size
    patches = jnp.stack(
        [images[:, i : h - k + 1 + i, j : w - k + 1 + j, :] for i in range(k) for j in range(k)],
        axis=-2,
    ).reshape(-1, k * k * c)  # (row, col, channel) order: the kernel's [kh, kw, C] layout
    covariance = patches.T @ patches / patches.shape[0]
    eigenvalues, eigenvectors = jnp.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    scaled = (eigenvectors / jnp.sqrt(eigenvalues + eps)).reshape(k, k, c, k * k * c)
    return jnp.concatenate([scaled, -scaled], axis=-1)


def init_whitening(params: dict, images: jax.Array) -> dict:
    """`params` with the whitening layer's kernel computed from normalised training `images`
    f32[N, 32, 32, 3] (the reference uses the first 5,000)."""
    kernel = params["whiten"]["conv"]["kernel"]
    whiten = whitening_kernel(images, kernel_size=kernel.shape[0]).astype(kernel.dtype)
    conv = params["whiten"]["conv"] | {"kernel": whiten}
    return params | {"whiten": params["whiten"] | {"conv": conv}}


class ConvGroup(nn.Module):
    """conv, 2x2 max-pool, BatchNorm, GELU, then conv, BatchNorm, GELU; with `residual`, a
    third conv, BatchNorm, GELU and the sum with the group's pooled activations (airbench96's
    group: a ResNet basic block after the downsampling conv)."""

    features: int
    bn_momentum: float
    dtype: Any = jnp.float32
    layers: str = "auto"
    residual: bool = False
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = lambda: Conv(
            self.features, 3, padding="SAME", use_bias=False,
            kernel_init=dirac_then_uniform, dtype=self.dtype, layers=self.layers,
        )  # fmt: skip
        norm = lambda: BatchNorm(
            momentum=self.bn_momentum,
            epsilon=1e-12,
            axis_name=self.axis_name,
            dtype=self.dtype,
            layers=self.layers,
        )
        x = MaxPool(2, 2, layers=self.layers)(conv()(x))
        x = nn.gelu(norm()(x, train), approximate=False)
        y = nn.gelu(norm()(conv()(x), train), approximate=False)
        if not self.residual:
            return y
        return x + nn.gelu(norm()(conv()(y), train), approximate=False)


class AirbenchNet(nn.Module):
    num_classes: int = 10
    widths: Sequence[int] = (64, 256, 256)
    whiten_kernel_size: int = 2
    bn_momentum: float = 0.6  # the running statistics keep 0.6 of their value per step
    scaling: float = 1 / 9
    residual: bool = False
    axis_name: str | None = None  # BatchNorm's pmap axis
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
            group = ConvGroup(
                width, self.bn_momentum, self.dtype, self.layers, self.residual, self.axis_name
            )
            x = group(x, train)
        x = MaxPool(3, 3, layers=self.layers)(x).reshape(x.shape[0], -1)
        logits = nn.Dense(
            self.num_classes, use_bias=False, kernel_init=torch_uniform, dtype=self.dtype
        )(x)
        return logits * self.scaling


register("airbench94", AirbenchNet, init_from_data=init_whitening)
register(
    "airbench_resnet", functools.partial(AirbenchNet, residual=True), init_from_data=init_whitening
)

"""The one convolution and normalisation layer every model in the zoo uses.

Models never call `flax.linen.Conv` or `flax.linen.BatchNorm` directly: going through `Conv`,
`BatchNorm` and `ConvBN` here means the convolution and normalisation implementation can be
changed for the whole zoo in one place (XLA:CPU, for one, runs plain convolutions far below its
matmul speed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.activations import activation

# He et al. 2015 "fan_out" normal init for ReLU convolutions, as torchvision's ResNet uses.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class Conv(nn.Module):
    """2-D convolution on NHWC input: f32[B, H, W, C] -> f32[B, H', W', features].

    `padding` is None (the default: k // 2 on every side, as PyTorch models write it, so a
    stride-2 layer samples the same pixels as the reference implementations), "SAME", "VALID",
    an int (symmetric) or flax's per-side pairs. `groups` > 1
    gives a grouped convolution (ResNeXt); `groups` = C a depthwise one. Parameters: `kernel`
    [kh, kw, C / groups, features] and, with `use_bias`, `bias` [features].
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = None
    use_bias: bool = True
    groups: int = 1
    kernel_init: Callable = he_normal_fan_out
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_size = _pair(self.kernel_size)
        padding = self.padding
        if padding is None:
            padding = tuple((k // 2, k // 2) if k % 2 else "SAME" for k in kernel_size)
            padding = "SAME" if "SAME" in padding else padding
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        return nn.Conv(
            self.features,
            kernel_size,
            strides=_pair(self.strides),
            padding=padding,
            use_bias=self.use_bias,
            feature_group_count=self.groups,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            name="conv",
        )(x)


class BatchNorm(nn.Module):
    """Batch normalisation over N, H, W of NHWC input (or N of [B, F]).

    In training (`train=True`) it normalises with the batch statistics and updates the running
    averages in the `batch_stats` collection; under `jax.pmap` with `axis_name` set, the batch
    statistics are averaged across devices so every replica normalises alike. `scale_init`
    zeros gives the zero-init residual trick (Goyal et al. 2017).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    scale_init: Callable = nn.initializers.ones
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=self.momentum,
            epsilon=self.epsilon,
            axis_name=self.axis_name if train else None,
            scale_init=self.scale_init,
            dtype=self.dtype,
            name="bn",
        )(x)


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> activation; `act` "identity" leaves it linear."""

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = None
    groups: int = 1
    act: str = "relu"
    bn_scale_init: Callable = nn.initializers.ones
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = Conv(
            self.features,
            self.kernel_size,
            self.strides,
            self.padding,
            use_bias=False,
            groups=self.groups,
            dtype=self.dtype,
        )(x)
        x = BatchNorm(axis_name=self.axis_name, scale_init=self.bn_scale_init, dtype=self.dtype)(
            x, train
        )
        return activation(self.act)(x)

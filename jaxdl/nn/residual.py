"""Residual blocks: the basic and bottleneck blocks of ResNet (He et al. 2016), their grouped
(ResNeXt) and wide variants, the option-A identity shortcut of the CIFAR ResNets, and the
pre-activation block of Wide ResNets (Zagoruyko & Komodakis 2016). All NHWC."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.conv import BatchNorm, Conv, ConvBN
from jaxdl.nn.dropout import Dropout


def pad_shortcut(x: jax.Array, features: int, stride: int) -> jax.Array:
    """Option-A shortcut (He et al. 2016, CIFAR): subsample by `stride` and zero-pad the extra
    channels equally on both sides; no parameters. f32[B, H, W, C] -> f32[B, H/s, W/s, F]."""
    if stride > 1:
        x = x[:, ::stride, ::stride, :]
    extra = features - x.shape[-1]
    if extra:
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return x


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut: f32[B, H, W, C] -> f32[B, H/s, W/s, features].

    `shortcut` "projection" uses a 1x1 conv + BN when shape changes (ImageNet ResNets, option B);
    "pad" uses the parameter-free `pad_shortcut` (CIFAR ResNets, option A).
    """

    features: int
    strides: int = 1
    shortcut: str = "projection"
    zero_init_residual: bool = False
    dilation: int = 1  # of both 3x3 convs (DeepLab's atrous stages)
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv_bn = lambda f, k, s, act, **kw: ConvBN(
            f, k, s, act=act, axis_name=self.axis_name, dtype=self.dtype, layers=self.layers, **kw
        )
        d = self.dilation
        y = conv_bn(self.features, 3, self.strides, "relu", dilation=d)(x, train)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            if self.shortcut == "pad":
                shortcut = pad_shortcut(x, self.features, self.strides)
            else:
                shortcut = conv_bn(self.features, 1, self.strides, "identity", name="downsample")(
                    x, train
                )
        last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        # relu(BN(conv(y)) + shortcut): one fused BatchNorm call
        return conv_bn(self.features, 3, 1, "relu", bn_scale_init=last_scale, dilation=d)(
            y, train, shortcut
        )


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped, strided), 1x1 expand to `features * 4`, plus a projection
    shortcut: f32[B, H, W, C] -> f32[B, H/s, W/s, 4 * features] (torchvision's ResNet v1.5,
    stride on the 3x3). The inner width is `features * base_width / 64 * groups`: ResNeXt-50
    32x4d has groups 32 and base_width 4; Wide ResNet-50-2 has base_width 128."""

    features: int
    strides: int = 1
    groups: int = 1
    base_width: int = 64
    expansion: int = 4
    zero_init_residual: bool = False
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv_bn = lambda f, k, s, act, **kw: ConvBN(
            f, k, s, act=act, axis_name=self.axis_name, dtype=self.dtype, layers=self.layers, **kw
        )
        width = int(self.features * (self.base_width / 64.0)) * self.groups
        out = self.features * self.expansion
        y = conv_bn(width, 1, 1, "relu")(x, train)
        y = conv_bn(width, 3, self.strides, "relu", groups=self.groups)(y, train)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != out:
            shortcut = conv_bn(out, 1, self.strides, "identity", name="downsample")(x, train)
        last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        # relu(BN(conv(y)) + shortcut): one fused BatchNorm call
        return conv_bn(out, 1, 1, "relu", bn_scale_init=last_scale)(y, train, shortcut)


class PreActBlock(nn.Module):
    """Wide ResNet block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, plus a shortcut (a bias-free
    1x1 conv of the pre-activated input when the shape changes). f32[B, H, W, C] ->
    f32[B, H/s, W/s, features]."""

    features: int
    strides: int = 1
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        bn = lambda: BatchNorm(axis_name=self.axis_name, dtype=self.dtype, layers=self.layers)
        pre = bn()(x, train, relu=True)
        y = Conv(
            self.features, 3, self.strides, use_bias=False, dtype=self.dtype, layers=self.layers
        )(pre)
        y = bn()(y, train, relu=True)
        if self.dropout_rate:
            y = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(y)
        y = Conv(self.features, 3, 1, use_bias=False, dtype=self.dtype, layers=self.layers)(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = Conv(
                self.features,
                1,
                self.strides,
                use_bias=False,
                dtype=self.dtype,
                layers=self.layers,
                name="shortcut",
            )(pre)
        return x + y

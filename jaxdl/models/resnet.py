"""ResNets: torchvision's ImageNet ResNet / ResNeXt / Wide ResNet-50-2, the CIFAR ResNets of
He et al. 2016 (option A), the CIFAR ResNet-18 (3x3 stem) and Wide ResNets for CIFAR
(Zagoruyko & Komodakis 2016).

Counts (params collection, BN scale and bias included): resnet18 11,689,512; resnet34
21,797,672; resnet50 25,557,032; resnet101 44,549,160; resnet152 60,192,808; resnext50_32x4d
25,028,904; wide_resnet50_2 68,883,240 (224x224x3, 1,000 classes); resnet20 269,722; resnet32
464,154; resnet44 658,586; resnet56 853,018; resnet110 1,727,962; wrn28_10 36,479,194;
wrn16_8 10,961,370 (32x32x3, 10 classes).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import BatchNorm, Conv, ConvBN
from jaxdl.nn.pool import MaxPool
from jaxdl.nn.residual import BasicBlock, Bottleneck, PreActBlock


class ResNet(nn.Module):
    """f32[B, H, W, 3] -> f32[B, num_classes]: stem, stages of residual blocks (the first block
    of every stage but the first has stride 2), global average pool, dense classifier.

    `stem` "imagenet": 7x7/2 conv-BN-ReLU and 3x3/2 max pool (224x224 input); "cifar": one 3x3
    conv-BN-ReLU (32x32 input). `block` "basic" or "bottleneck"; `shortcut` "projection"
    (1x1 conv + BN) or "pad" (option A, CIFAR ResNets).
    """

    num_classes: int
    stage_sizes: Sequence[int]
    widths: Sequence[int] = (64, 128, 256, 512)
    block: str = "basic"
    stem: str = "imagenet"
    shortcut: str = "projection"
    groups: int = 1
    base_width: int = 64
    zero_init_residual: bool = False
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        common = {"axis_name": self.axis_name, "dtype": self.dtype, "layers": self.layers}
        if self.stem == "imagenet":
            x = ConvBN(self.widths[0], 7, 2, **common)(x, train)
            x = MaxPool(3, 2, padding=1, layers=self.layers)(x)
        else:
            x = ConvBN(self.widths[0], 3, 1, **common)(x, train)
        for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for index in range(blocks):
                strides = 2 if stage > 0 and index == 0 else 1
                if self.block == "basic":
                    block = BasicBlock(
                        width, strides, self.shortcut, self.zero_init_residual, **common
                    )
                else:
                    block = Bottleneck(
                        width,
                        strides,
                        self.groups,
                        self.base_width,
                        zero_init_residual=self.zero_init_residual,
                        **common,
                    )
                x = block(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)


class WideResNet(nn.Module):
    """WRN-d-k for 32x32 input: 3x3 conv to 16, three stages of (d - 4) / 6 pre-activation
    blocks of width 16k, 32k, 64k, then BN-ReLU, global pool, dense."""

    num_classes: int
    depth: int = 28
    widen_factor: int = 10
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        blocks = (self.depth - 4) // 6
        x = Conv(16, 3, use_bias=False, dtype=self.dtype, layers=self.layers)(x)
        for stage, width in enumerate((16, 32, 64)):
            for index in range(blocks):
                strides = 2 if stage > 0 and index == 0 else 1
                x = PreActBlock(
                    width * self.widen_factor,
                    strides,
                    self.dropout_rate,
                    self.axis_name,
                    self.dtype,
                    self.layers,
                )(x, train)
        x = nn.relu(
            BatchNorm(axis_name=self.axis_name, dtype=self.dtype, layers=self.layers)(x, train)
        )
        return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, axis=(1, 2)))


_imagenet = functools.partial(ResNet, stem="imagenet")
for _name, _sizes, _block in (
    ("resnet18", (2, 2, 2, 2), "basic"),
    ("resnet34", (3, 4, 6, 3), "basic"),
    ("resnet50", (3, 4, 6, 3), "bottleneck"),
    ("resnet101", (3, 4, 23, 3), "bottleneck"),
    ("resnet152", (3, 8, 36, 3), "bottleneck"),
):
    register(_name, functools.partial(_imagenet, stage_sizes=_sizes, block=_block))
register(
    "resnext50_32x4d",
    functools.partial(
        _imagenet, stage_sizes=(3, 4, 6, 3), block="bottleneck", groups=32, base_width=4
    ),
)
register(
    "wide_resnet50_2",
    functools.partial(_imagenet, stage_sizes=(3, 4, 6, 3), block="bottleneck", base_width=128),
)
# ResNet-18 with a 3x3 stride-1 stem and no max pool, the usual CIFAR adaptation.
register("resnet18_cifar", functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), stem="cifar"))
# ResNeXt-29-style CIFAR model on the same bottleneck block (3 stages, 32 groups x 4).
register(
    "resnext_cifar",
    functools.partial(
        ResNet,
        stage_sizes=(3, 3, 3),
        widths=(64, 128, 256),
        block="bottleneck",
        stem="cifar",
        groups=32,
        base_width=4,
    ),
)
# He et al. 2016 CIFAR ResNets: depth 6n + 2, widths 16/32/64, option-A shortcuts.
for _depth in (20, 32, 44, 56, 110):
    register(
        f"resnet{_depth}",
        functools.partial(
            ResNet,
            stage_sizes=((_depth - 2) // 6,) * 3,
            widths=(16, 32, 64),
            stem="cifar",
            shortcut="pad",
        ),
    )
register("wrn28_10", functools.partial(WideResNet, depth=28, widen_factor=10))
register("wrn16_8", functools.partial(WideResNet, depth=16, widen_factor=8))
register("wrn16_4", functools.partial(WideResNet, depth=16, widen_factor=4))

"""A fully convolutional segmentation network (Long et al. 2015) on the CIFAR-ResNet trunk.

f32[B, H, W, C] -> f32[B, H, W, num_classes] per-pixel logits, for any H and W divisible by the
trunk's stride (2 ** (stages - 1 - dilated_stages)). Every stage's features are scored by a 1x1
conv; scores are bilinearly upsampled from coarse to fine and summed (FCN-8s-style skips), then
upsampled to the input size. No dense layer, so the input size is free.

`dilated_stages` n > 0 is DeepLab's answer to the coarse last grids (Chen et al. 2017): the last
n stages keep the resolution instead of halving it, and their 3x3 convolutions are dilated by
2, 4, ... instead, so each still sees as far as it did, on a finer grid, with the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn import Conv, ConvBN
from jaxdl.nn.residual import BasicBlock


def upsample_to(x: jax.Array, height: int, width: int) -> jax.Array:
    """Bilinear resize f32[B, h, w, C] -> f32[B, height, width, C]."""
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), "bilinear")


class FCN(nn.Module):
    num_classes: int
    stage_sizes: Sequence[int] = (2, 2, 2)
    widths: Sequence[int] = (32, 64, 128)
    dilated_stages: int = 0
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @property
    def stride(self) -> int:
        return 2 ** (len(self.stage_sizes) - 1 - self.dilated_stages)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        height, width = x.shape[1], x.shape[2]
        if not 0 <= self.dilated_stages < len(self.stage_sizes):
            raise ConfigError(
                f"fcn dilated_stages must be between 0 and {len(self.stage_sizes) - 1} (its "
                f"stages after the first), got {self.dilated_stages}."
            )
        if height % self.stride or width % self.stride:
            raise ConfigError(
                f"fcn needs height and width divisible by its stride {self.stride}, got "
                f"{height}x{width}; pad or crop the images to a multiple of {self.stride}."
            )
        common = {"axis_name": self.axis_name, "dtype": self.dtype, "layers": self.layers}
        x = ConvBN(self.widths[0], 3, **common)(x, train)
        scores = []
        first_dilated = len(self.stage_sizes) - self.dilated_stages
        for stage, (blocks, features) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            dilation = 2 ** (stage - first_dilated + 1) if stage >= first_dilated else 1
            for index in range(blocks):
                strides = 2 if stage > 0 and index == 0 and dilation == 1 else 1
                x = BasicBlock(features, strides, dilation=dilation, **common)(x, train)
            scores.append(
                Conv(
                    self.num_classes, 1, dtype=self.dtype, layers=self.layers, name=f"score{stage}"
                )(x)
            )
        fused = scores[-1]
        for finer in reversed(scores[:-1]):
            fused = finer + upsample_to(fused, finer.shape[1], finer.shape[2])
        return upsample_to(fused, height, width)


register("fcn", FCN)

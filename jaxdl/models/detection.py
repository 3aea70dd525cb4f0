"""A centre-point object detector (CenterNet: Zhou et al. 2019, "Objects as Points") on a
small ResNet trunk with a feature-pyramid top-down path.

f32[B, H, W, C] -> f32[B, H/4, W/4, num_classes + 4]: for every cell of a grid at stride 4,
`num_classes` heatmap logits (is this cell the centre of an object of class k?), then the
box's height and width in cells, then the centre's offset (dy, dx) within the cell in [0, 1).
The targets, the loss and the decoding into boxes are in `jaxdl.detection.centernet`.

The trunk halves the resolution in its stem and at each later stage (strides 2, 4, 8, 16);
the top-down path brings the coarse, wide-context features back to stride 4 by upsampling and
adding 1x1 projections of the finer stages (Lin et al. 2017), so a cell sees both the digit
around it and its neighbourhood. One shared 3x3 conv-BN-ReLU feeds three 1x1 heads. The
heatmap head's bias starts at log(0.1 / 0.9), so every cell begins by predicting "no centre"
with probability 0.9 (the heads' weights start small) and the focal loss is not swamped by
the background at the first step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn import Conv, ConvBN
from jaxdl.nn.residual import BasicBlock

STRIDE = 4  # the output grid's stride in input pixels
BOX_CHANNELS = 4  # height, width, dy, dx
HEATMAP_PRIOR = 0.1
HEAD_INIT = nn.initializers.normal(0.01)  # small first outputs: the prior decides the start


def upsample(x: jax.Array, height: int, width: int) -> jax.Array:
    """Nearest-neighbour resize f32[B, h, w, C] -> f32[B, height, width, C]."""
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), "nearest")


def residual_trunk(
    x: jax.Array,
    train: bool,
    stage_sizes: Sequence[int],
    widths: Sequence[int],
    common: dict[str, Any],
) -> list[jax.Array]:
    """The trunk of the detector and the localiser, built in the calling module: a stride-2
    3x3 conv-BN-ReLU stem, then `stage_sizes[i]` residual blocks of `widths[i]` channels per
    stage, each stage after the first halving the grid. Returns every stage's output."""
    x = ConvBN(widths[0], 3, 2, **common)(x, train)
    stages = []
    for stage, (blocks, features) in enumerate(zip(stage_sizes, widths, strict=True)):
        for index in range(blocks):
            strides = 2 if stage > 0 and index == 0 else 1
            x = BasicBlock(features, strides, **common)(x, train)
        stages.append(x)
    return stages


class CenterNet(nn.Module):
    """See the module docstring. `stage_sizes` residual blocks per stage at `widths` channels
    (the first stage at stride 2); the pyramid and the heads are `head_width` wide."""

    num_classes: int
    stage_sizes: Sequence[int] = (1, 2, 2, 2)
    widths: Sequence[int] = (16, 32, 64, 128)
    head_width: int = 64
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @property
    def input_multiple(self) -> int:
        return 2 ** len(self.stage_sizes)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        height, width = x.shape[1], x.shape[2]
        if len(self.stage_sizes) < 2 or len(self.widths) != len(self.stage_sizes):
            raise ConfigError(
                f"centernet needs at least 2 stages and one width per stage, got stage_sizes "
                f"{tuple(self.stage_sizes)} and widths {tuple(self.widths)}."
            )
        if height % self.input_multiple or width % self.input_multiple:
            raise ConfigError(
                f"centernet needs height and width divisible by {self.input_multiple}, got "
                f"{height}x{width}; pad or crop the images to a multiple of it."
            )
        common = {"axis_name": self.axis_name, "dtype": self.dtype, "layers": self.layers}
        conv = lambda features, name: Conv(
            features, 1, dtype=self.dtype, layers=self.layers, name=name
        )
        stages = residual_trunk(x, train, self.stage_sizes, self.widths, common)
        # top-down from the coarsest stage to stride 4 (the second stage)
        merged = conv(self.head_width, f"lateral{len(stages) - 1}")(stages[-1])
        for stage in range(len(stages) - 2, 0, -1):
            finer = stages[stage]
            merged = upsample(merged, finer.shape[1], finer.shape[2]) + conv(
                self.head_width, f"lateral{stage}"
            )(finer)
        shared = ConvBN(self.head_width, 3, **common, name="head")(merged, train)
        prior = math.log(HEATMAP_PRIOR / (1 - HEATMAP_PRIOR))
        heatmap = Conv(
            self.num_classes,
            1,
            kernel_init=HEAD_INIT,
            bias_init=nn.initializers.constant(prior),
            dtype=self.dtype,
            layers=self.layers,
            name="heatmap",
        )(shared)
        box = Conv(
            BOX_CHANNELS, 1, kernel_init=HEAD_INIT, dtype=self.dtype, layers=self.layers, name="box"
        )(shared)
        return jnp.concatenate([heatmap, box], -1)


register("centernet", CenterNet)


class Localiser(nn.Module):
    """Classification plus localisation of one object: f32[B, H, W, C] -> f32[B, num_classes]:
    num_classes - 4 class logits, then the logits of the box's centre (y, x) and size (h, w)
    as fractions of the image, the layout `jaxdl.tasks.detection.localisation_objective`
    reads (the localisation task asks the zoo for K + 4 outputs, as of any classifier).

    A residual trunk (`widths` channels, a stride-2 stem, each later stage halving the grid)
    feeds two branches. The class branch pools globally, so a digit is recognised the same
    wherever it sits (a dense head over the flattened grid has to learn each class at every
    position); the box branch keeps the positions: a 1x1 projection to `box_width` channels,
    flattened into a hidden dense layer of `box_hidden` units."""

    num_classes: int
    stage_sizes: Sequence[int] = (1, 1, 1)
    widths: Sequence[int] = (32, 64, 128)
    box_width: int = 32
    box_hidden: int = 256
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.num_classes <= BOX_CHANNELS:
            raise ConfigError(
                f"localiser's outputs are the class logits and {BOX_CHANNELS} box numbers, got "
                f"num_classes {self.num_classes}; give it the number of classes + 4."
            )
        if not self.stage_sizes or len(self.widths) != len(self.stage_sizes):
            raise ConfigError(
                f"localiser needs one width per stage, got stage_sizes {tuple(self.stage_sizes)}"
                f" and widths {tuple(self.widths)}."
            )
        common = {"axis_name": self.axis_name, "dtype": self.dtype, "layers": self.layers}
        x = residual_trunk(x, train, self.stage_sizes, self.widths, common)[-1]
        logits = nn.Dense(self.num_classes - BOX_CHANNELS, dtype=self.dtype, name="classes")(
            x.mean(axis=(1, 2))
        )
        grid = ConvBN(self.box_width, 1, **common, name="box_projection")(x, train)
        hidden = nn.relu(
            nn.Dense(self.box_hidden, dtype=self.dtype, name="box_hidden")(
                grid.reshape(grid.shape[0], -1)
            )
        )
        box = nn.Dense(BOX_CHANNELS, dtype=self.dtype, name="box")(hidden)
        return jnp.concatenate([logits, box], -1)


register("localiser", Localiser)

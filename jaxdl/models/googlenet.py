"""GoogLeNet / Inception v1 (Szegedy et al. 2015), torchvision's layout without the auxiliary
heads: 6,624,904 parameters at 224x224x3 with 1,000 classes. `googlenet_cifar` drops the
ImageNet stem's downsampling for 32x32 input (a 3x3 stem, as in common CIFAR ports)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import ConvBN
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.inception import Inception
from jaxdl.nn.pool import MaxPool

# (c1, c3_reduce, c3, c5_reduce, c5, pool_proj) per module; an int is a stride-2 max pool of
# that window (torchvision: 3 after inception 3b, 2 after 4e, both with ceil_mode).
STAGES = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    3,
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    2,
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)


class GoogLeNet(nn.Module):
    """f32[B, H, W, 3] -> f32[B, num_classes]. `stem` "imagenet" (7x7/2 conv, pools; 224x224
    input) or "cifar" (one 3x3 conv to 192 channels; 32x32 input). `stages` lists the inception
    modules and pools (default: the paper's nine modules)."""

    num_classes: int = 1000
    stages: Sequence[Any] = STAGES
    stem: str = "imagenet"
    wide_kernel: int = 3
    dropout_rate: float = 0.2
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = lambda f, k, s=1: ConvBN(
            f, k, s, axis_name=self.axis_name, dtype=self.dtype, layers=self.layers
        )
        if self.stem == "imagenet":
            x = MaxPool(3, 2, ceil_mode=True, layers=self.layers)(conv(64, 7, 2)(x, train))
            x = conv(64, 1)(x, train)
            x = MaxPool(3, 2, ceil_mode=True, layers=self.layers)(conv(192, 3)(x, train))
        else:
            x = conv(192, 3)(x, train)
        for stage in self.stages:
            if isinstance(stage, int):
                x = MaxPool(stage, 2, ceil_mode=True, layers=self.layers)(x)
                continue
            x = Inception(
                *stage,
                wide_kernel=self.wide_kernel,
                axis_name=self.axis_name,
                dtype=self.dtype,
                layers=self.layers,
            )(x, train)
        x = jnp.mean(x, axis=(1, 2))
        x = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)


register("googlenet", GoogLeNet)
register("googlenet_cifar", lambda **options: GoogLeNet(stem="cifar", **options))

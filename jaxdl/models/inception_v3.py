"""Inception v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture"), torchvision's
layout: 27,161,264 parameters at 299x299x3 with 1,000 classes and the auxiliary classifier,
23,834,568 without it. `inception_v3_cifar` keeps the blocks and replaces the stem for 32x32.

The paper's ideas, each visible in a block below: a 5x5 convolution is two stacked 3x3s
(InceptionA's double-3x3 branch); an n x n convolution is a 1 x n followed by an n x 1
(`factorised`: InceptionC's 7x7 branches, 2n weights per channel pair instead of n^2);
grids shrink by parallel stride-2 convolutions and pooling concatenated, not by pooling
alone (InceptionB, InceptionD); the coarsest grid widens its 3x3 branches into parallel 1x3
and 3x1 (InceptionE). Every convolution is conv-BN-ReLU without bias (torchvision's
`BasicConv2d`; BN epsilon 1e-3 there, the count does not depend on it).

`__call__` returns the logits; with `aux_logits` and `return_aux`, in training, a dict
`{"logits", "aux"}` with the auxiliary head's logits from the 17x17 grid, which the default
objective (`jaxdl.step.classification`) adds to the loss with weight 0.3, as the paper does.
Without `return_aux` the head's parameters exist (torchvision's count) but are not trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import ConvBN
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.pool import AvgPool, MaxPool


class Blocks(nn.Module):
    """Shared plumbing: conv-BN-ReLU with this model's options."""

    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    def conv(self, features: int, kernel: int | Sequence[int], strides: int = 1, padding=None):
        return ConvBN(
            features,
            kernel,
            strides,
            padding,
            axis_name=self.axis_name,
            dtype=self.dtype,
            layers=self.layers,
        )

    def factorised(self, x, train, widths: Sequence[int], n: int, first: str = "1xn"):
        """A chain of 1 x n and n x 1 conv-BN-ReLUs alternating (starting with `first`), one
        per entry of `widths`: together an n x n receptive field at 2n weights per pair."""
        shapes = ((1, n), (n, 1)) if first == "1xn" else ((n, 1), (1, n))
        for index, width in enumerate(widths):
            x = self.conv(width, shapes[index % 2])(x, train)
        return x

    def pool_branch(self, x, train, features: int):
        """3x3 average pooling (stride 1, padded, padding counted as PyTorch does) -> 1x1."""
        return self.conv(features, 1)(AvgPool(3, 1, padding=1)(x), train)


class InceptionA(Blocks):
    """35x35: 1x1 64 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | pool -> 1x1."""

    pool_features: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        b1 = self.conv(64, 1)(x, train)
        b5 = self.conv(64, 5)(self.conv(48, 1)(x, train), train)
        b3 = self.conv(96, 3)(self.conv(96, 3)(self.conv(64, 1)(x, train), train), train)
        return jnp.concatenate([b1, b5, b3, self.pool_branch(x, train, self.pool_features)], -1)


class InceptionB(Blocks):
    """35 -> 17: 3x3/2 384 | 1x1 64 -> 3x3 96 -> 3x3/2 96 | 3x3/2 max pool."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        b3 = self.conv(384, 3, 2, "VALID")(x, train)
        dbl = self.conv(96, 3, 2, "VALID")(
            self.conv(96, 3)(self.conv(64, 1)(x, train), train), train
        )
        return jnp.concatenate([b3, dbl, MaxPool(3, 2, layers=self.layers)(x)], -1)


class InceptionC(Blocks):
    """17x17 with factorised 7x7s: 1x1 192 | 1x1 c -> 1x7 c -> 7x1 192 |
    1x1 c -> 7x1 c -> 1x7 c -> 7x1 c -> 1x7 192 | pool -> 1x1 192."""

    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = self.channels_7x7
        b1 = self.conv(192, 1)(x, train)
        b7 = self.factorised(self.conv(c, 1)(x, train), train, (c, 192), 7, "1xn")
        dbl = self.factorised(self.conv(c, 1)(x, train), train, (c, c, c, 192), 7, "nx1")
        return jnp.concatenate([b1, b7, dbl, self.pool_branch(x, train, 192)], -1)


class InceptionD(Blocks):
    """17 -> 8: 1x1 192 -> 3x3/2 320 | 1x1 192 -> 1x7 -> 7x1 -> 3x3/2 192 | 3x3/2 max pool."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        b3 = self.conv(320, 3, 2, "VALID")(self.conv(192, 1)(x, train), train)
        b7 = self.factorised(self.conv(192, 1)(x, train), train, (192, 192), 7, "1xn")
        b7 = self.conv(192, 3, 2, "VALID")(b7, train)
        return jnp.concatenate([b3, b7, MaxPool(3, 2, layers=self.layers)(x)], -1)


class InceptionE(Blocks):
    """8x8, widened: 1x1 320 | 1x1 384 -> (1x3 384 | 3x1 384) | 1x1 448 -> 3x3 384 ->
    (1x3 384 | 3x1 384) | pool -> 1x1 192: 2,048 channels."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        def split(y):
            return [self.conv(384, (1, 3))(y, train), self.conv(384, (3, 1))(y, train)]

        b1 = self.conv(320, 1)(x, train)
        b3 = split(self.conv(384, 1)(x, train))
        dbl = split(self.conv(384, 3)(self.conv(448, 1)(x, train), train))
        return jnp.concatenate([b1, *b3, *dbl, self.pool_branch(x, train, 192)], -1)


class AuxiliaryHead(Blocks):
    """On the 17x17 grid: 5x5/3 average pool -> 1x1 128 -> 5x5 768 -> global pool -> dense."""

    num_classes: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = AvgPool(5, 3)(x)
        x = self.conv(768, 5, 1, "VALID")(self.conv(128, 1)(x, train), train)
        return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, axis=(1, 2)))


class InceptionV3(nn.Module):
    """f32[B, 299, 299, 3] (`stem` "imagenet") or f32[B, 32, 32, 3] ("cifar") ->
    f32[B, num_classes]; see the module docstring."""

    num_classes: int = 1000
    aux_logits: bool = True
    return_aux: bool = False
    stem: str = "imagenet"
    dropout_rate: float = 0.5
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        common = {"axis_name": self.axis_name, "dtype": self.dtype, "layers": self.layers}
        conv = lambda f, k, s=1, p=None: ConvBN(f, k, s, p, **common)
        if self.stem == "imagenet":  # 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35
            x = conv(32, 3, 2, "VALID")(x, train)
            x = conv(32, 3, 1, "VALID")(x, train)
            x = MaxPool(3, 2, layers=self.layers)(conv(64, 3)(x, train))
            x = conv(192, 3, 1, "VALID")(conv(80, 1)(x, train), train)
            x = MaxPool(3, 2, layers=self.layers)(x)
        else:  # 32 -> 32 (four padded stride-1 convs) -> 16
            for width, kernel in ((32, 3), (64, 3), (80, 1), (192, 3)):
                x = conv(width, kernel)(x, train)
            x = MaxPool(3, 2, padding=1, layers=self.layers)(x)
        for pool_features in (32, 64, 64):
            x = InceptionA(pool_features=pool_features, **common)(x, train)
        x = InceptionB(**common)(x, train)
        for channels in (128, 160, 160, 192):
            x = InceptionC(channels_7x7=channels, **common)(x, train)
        aux = None
        if self.aux_logits:
            aux = AuxiliaryHead(num_classes=self.num_classes, **common)(x, train)
        x = InceptionD(**common)(x, train)
        for _ in range(2):
            x = InceptionE(**common)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        x = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(x)
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(x)
        if train and self.return_aux and aux is not None:
            return {"logits": logits, "aux": aux}
        return logits


register("inception_v3", InceptionV3)
register(
    "inception_v3_cifar",
    lambda num_classes=10, **options: InceptionV3(
        num_classes=num_classes, stem="cifar", aux_logits=False, **options
    ),
)

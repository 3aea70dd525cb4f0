"""AlexNet (Krizhevsky et al. 2012): `alexnet`, torchvision's single-tower form (61,100,840
parameters at 224x224x3 with 1,000 classes), and `alexnet_paper`, the two-tower network as
the paper describes it (60,965,224 at 227x227x3)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import Conv
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.lrn import LocalResponseNorm
from jaxdl.nn.pool import MaxPool, adaptive_avg_pool


class AlexNet(nn.Module):
    """f32[B, 224, 224, 3] -> f32[B, num_classes]; five biased convs, three dense layers with
    dropout before the first two."""

    num_classes: int = 1000
    dropout_rate: float = 0.5
    axis_name: str | None = None  # the pmap axis, for dropout masks
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = lambda f, k, s=1, p=None: Conv(
            f, k, s, padding=p, dtype=self.dtype, layers=self.layers
        )
        x = MaxPool(3, 2, layers=self.layers)(nn.relu(conv(64, 11, 4, 2)(x)))
        x = MaxPool(3, 2, layers=self.layers)(nn.relu(conv(192, 5)(x)))
        x = nn.relu(conv(384, 3)(x))
        x = nn.relu(conv(256, 3)(x))
        x = MaxPool(3, 2, layers=self.layers)(nn.relu(conv(256, 3)(x)))
        x = adaptive_avg_pool(x, (6, 6)).reshape(x.shape[0], -1)
        for width in (4096, 4096):
            x = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(x)
            x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)


register("alexnet", AlexNet)


class AlexNetPaper(nn.Module):
    """The network of Krizhevsky et al. (2012) as published: f32[B, 227, 227, 3] ->
    f32[B, num_classes], 60,965,224 parameters with 1,000 classes.

    Five convolutions with 96, 256, 384, 384 and 256 kernels; the layers the paper splits
    across its two GPUs (conv2, conv4, conv5: each GPU's kernels see only its own half of the
    previous layer) are grouped convolutions with groups = 2, while conv3 and the dense layers
    connect across both halves. Local response normalisation after the first two ReLUs,
    overlapping 3x3 max-pooling with stride 2 after it and after conv5 (feature maps 55, 27,
    27, 13, 13, 13, 13, 6), then 6 x 6 x 256 = 9,216 features into two dense layers of 4,096
    with dropout. (The paper's 224 input only works out with 227.)"""

    num_classes: int = 1000
    dropout_rate: float = 0.5
    local_response_norm: bool = True
    axis_name: str | None = None  # the pmap axis, for dropout masks
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = lambda f, k, s=1, p=None, g=1: Conv(
            f, k, s, padding=p, groups=g, dtype=self.dtype, layers=self.layers
        )
        pool = lambda y: MaxPool(3, 2, layers=self.layers)(y)
        norm = lambda y: LocalResponseNorm()(y) if self.local_response_norm else y
        x = pool(norm(nn.relu(conv(96, 11, 4, "VALID")(x))))
        x = pool(norm(nn.relu(conv(256, 5, 1, 2, g=2)(x))))
        x = nn.relu(conv(384, 3, 1, 1)(x))
        x = nn.relu(conv(384, 3, 1, 1, g=2)(x))
        x = pool(nn.relu(conv(256, 3, 1, 1, g=2)(x)))
        x = x.reshape(x.shape[0], -1)
        for width in (4096, 4096):
            x = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(x)
            x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)


register("alexnet_paper", AlexNetPaper)

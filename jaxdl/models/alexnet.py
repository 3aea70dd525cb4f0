"""AlexNet (Krizhevsky et al. 2012) in torchvision's single-tower form: 61,100,840 parameters
at 224x224x3 with 1,000 classes."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import Conv
from jaxdl.nn.dropout import Dropout
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

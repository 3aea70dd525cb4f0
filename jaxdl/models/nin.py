"""Network in Network (Lin, Chen and Yan 2013) for CIFAR-10: `nin_cifar`, 966,986 parameters
with 10 classes.

Each "mlpconv" block is a spatial convolution followed by two 1x1 convolutions, all with ReLU:
a small multilayer perceptron slid over the image. Three blocks (5x5 192 -> 1x1 160 -> 1x1 96;
5x5 192 -> 1x1 192 -> 1x1 192; 3x3 192 -> 1x1 192 -> 1x1 classes), 3x3 max-pooling with
stride 2 and dropout between them, and global average pooling of the last block's per-class
maps instead of dense layers: the paper's point, each class gets one feature map, and the
network has no fully connected layer to overfit.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn import Conv
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.pool import MaxPool

BLOCKS = ((5, (192, 160, 96)), (5, (192, 192, 192)), (3, (192, 192, None)))


class NetworkInNetwork(nn.Module):
    """f32[B, H, W, C] -> f32[B, num_classes] (see the module docstring); the last block's
    last 1x1 convolution has `num_classes` maps and its ReLU is kept, as in the paper's
    Caffe model, before the average pooling."""

    num_classes: int = 10
    dropout_rate: float = 0.5
    axis_name: str | None = None  # the pmap axis, for dropout masks
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for index, (kernel, widths) in enumerate(BLOCKS):
            for position, width in enumerate(widths):
                size = kernel if position == 0 else 1
                features = self.num_classes if width is None else width
                x = nn.relu(Conv(features, size, dtype=self.dtype, layers=self.layers)(x))
            if index < len(BLOCKS) - 1:
                x = MaxPool(3, 2, padding=1, layers=self.layers)(x)
                x = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(x)
        return jnp.mean(x, axis=(1, 2))


register("nin_cifar", NetworkInNetwork)

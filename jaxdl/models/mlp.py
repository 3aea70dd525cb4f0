"""Multilayer perceptron with a chosen activation (including Maxout), init and dropout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn.activations import Maxout, PReLU, activation
from jaxdl.nn.dropout import Dropout

# "xavier" (Glorot & Bengio 2010) keeps variance for tanh/sigmoid; "he" (He et al. 2015)
# doubles it to make up for ReLU zeroing half its inputs; "lecun" is Flax's default.
INITIALISERS = {
    "xavier": nn.initializers.xavier_uniform(),
    "he": nn.initializers.he_normal(),
    "lecun": nn.initializers.lecun_normal(),
}


def initializer(name: str):
    if name not in INITIALISERS:
        raise ConfigError(f"unknown init {name!r}; choose one of {', '.join(INITIALISERS)}.")
    return INITIALISERS[name]


class MLP(nn.Module):
    """f32[B, ...] -> f32[B, num_classes]: flatten, then `widths` hidden layers, then a linear
    classifier. `act` is an activation name, "maxout" (with `maxout_pieces` linear pieces
    per unit) or "prelu" (a learned slope per unit); "leaky_relu" has slope `leaky_slope`;
    dropout with `dropout_rate` follows each hidden layer in training."""

    num_classes: int
    widths: Sequence[int] = (1024, 1024)
    act: str = "relu"
    weight_init: str = "he"
    dropout_rate: float = 0.0
    axis_name: str | None = None  # the pmap axis, for dropout masks
    maxout_pieces: int = 2
    leaky_slope: float = 0.01
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kernel_init = initializer(self.weight_init)
        x = x.reshape(x.shape[0], -1).astype(self.dtype)
        for width in self.widths:
            if self.act == "maxout":
                x = Maxout(width, self.maxout_pieces, kernel_init=kernel_init, dtype=self.dtype)(x)
            else:
                x = nn.Dense(width, kernel_init=kernel_init, dtype=self.dtype)(x)
                if self.act == "prelu":
                    x = PReLU()(x)
                elif self.act == "leaky_relu":
                    x = nn.leaky_relu(x, self.leaky_slope)
                else:
                    x = activation(self.act)(x)
            if self.dropout_rate:
                x = Dropout(self.dropout_rate, deterministic=not train, axis_name=self.axis_name)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)


register("mlp", MLP)

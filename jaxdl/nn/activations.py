"""Activations by name, and Maxout (Goodfellow et al. 2013)."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError

# Maxout is a layer (it owns the linear map), so it is not in this table; see `Maxout`.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "leaky_relu": lambda x: nn.leaky_relu(x, negative_slope=0.01),
    "elu": nn.elu,
    "gelu": nn.gelu,
    "identity": lambda x: x,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The elementwise activation called `name`; an unknown name lists the known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        known = ", ".join(sorted([*ACTIVATIONS, "maxout"]))
        raise ConfigError(f"unknown activation {name!r}; choose one of {known}.") from None


def maxout(x: jax.Array, pieces: int) -> jax.Array:
    """Max over groups of `pieces` consecutive features: f32[..., F * pieces] -> f32[..., F]."""
    if x.shape[-1] % pieces:
        raise ConfigError(
            f"maxout needs a feature count divisible by pieces={pieces}, got {x.shape[-1]}."
        )
    grouped = x.reshape(*x.shape[:-1], x.shape[-1] // pieces, pieces)
    return jnp.max(grouped, axis=-1)


class Maxout(nn.Module):
    """A dense layer with `features * pieces` outputs followed by a max over each group of
    `pieces`: f32[B, D] -> f32[B, features]. A maxout unit learns its own convex activation."""

    features: int
    pieces: int = 2
    kernel_init: Callable = nn.initializers.lecun_normal()
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Dense(self.features * self.pieces, kernel_init=self.kernel_init, dtype=self.dtype)(x)
        return maxout(x, self.pieces)

"""Activations by name, and the two with parameters of their own: Maxout (Goodfellow et al.
2013) and PReLU (He et al. 2015)."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError

# Maxout and PReLU are layers (they own parameters), so they are not in this table; see
# `Maxout` and `PReLU`. Leaky ReLU's slope here is the usual 0.01 (`leaky_relu` takes others).
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
        known = ", ".join(sorted([*ACTIVATIONS, "maxout", "prelu"]))
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


class PReLU(nn.Module):
    """Parametric ReLU: f32[..., C] -> f32[..., C], x for x >= 0 and a_c x below, with one
    learned slope a_c per channel, initialised to 0.25 (He et al. 2015)."""

    init_slope: float = 0.25

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        slope = self.param("slope", nn.initializers.constant(self.init_slope), (x.shape[-1],))
        return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)

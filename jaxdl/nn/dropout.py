"""Dropout whose masks do not depend on how the batch is split over devices.

`flax.linen.Dropout` draws one mask for the array it sees: on one device the global batch, under
`jax.pmap` each device's slice, from a key each device must vary (else all slices get the same
mask). So a pmap run draws other masks than a one-device run on the same batch. Here each
example's mask comes from the step's key folded with the example's position in the global batch:
under pmap that position is the device index times the slice size plus the row, so `single`,
`pmap` and `sharded` runs draw bit-identical masks and train the same model.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def example_keys(key: jax.Array, batch: int, axis_name: str | None = None) -> jax.Array:
    """One key per example, u32[batch, 2]: `key` folded with each example's global position
    (offset by this device's slice under `jax.pmap(axis_name=...)`)."""
    first = lax.axis_index(axis_name) * batch if axis_name is not None else 0
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(first + jnp.arange(batch))


class Dropout(nn.Module):
    """Zeroes each entry with probability `rate` in training and scales the rest by
    1 / (1 - rate); the identity when `deterministic`. Input f32[B, ...]: the leading axis is
    the batch. Draws from the "dropout" RNG stream; `axis_name` is the pmap axis (None
    elsewhere)."""

    rate: float
    deterministic: bool = False
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.deterministic or self.rate == 0.0:
            return x
        if self.rate == 1.0:
            return jnp.zeros_like(x)
        keep = 1.0 - self.rate
        keys = example_keys(self.make_rng("dropout"), x.shape[0], self.axis_name)
        mask = jax.vmap(lambda k: jax.random.bernoulli(k, keep, x.shape[1:]))(keys)
        return lax.select(mask, x / keep, jnp.zeros_like(x))

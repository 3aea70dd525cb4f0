"""Linear, logistic and softmax regression: one dense layer on the flattened input.

All three are the same affine map; they differ in the loss that reads the output (squared
error, binary cross-entropy on a sigmoid, softmax cross-entropy). Input f32[B, ...] is flattened
to f32[B, D].
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register


class Affine(nn.Module):
    """f32[B, ...] -> f32[B, outputs]: flatten, then x @ W + b."""

    outputs: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no dropout or batch statistics
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.outputs, kernel_init=nn.initializers.zeros, dtype=self.dtype)(x)


def _affine(num_classes: int = 1, **options) -> nn.Module:
    """`num_classes` is the number of outputs: regression targets, 1 logit, or K logits."""
    return Affine(outputs=num_classes, **options)


register("linear_regression", _affine)
register("logistic_regression", _affine)
register("softmax_regression", lambda num_classes=10, **options: _affine(num_classes, **options))

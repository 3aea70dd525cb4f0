"""Looking inside training: per-layer gradient norms (vanishing and exploding gradients)."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxdl.losses import softmax_cross_entropy


def kernel_gradient_norms(
    model: nn.Module, variables: dict, images: jax.Array, labels: jax.Array
) -> list[tuple[str, float]]:
    """The L2 norm of the cross-entropy's gradient with respect to every kernel (weight
    matrix or filter bank), in the order the model calls its layers, for one batch
    (f32[B, ...], i32[B]) in inference mode. Layers near the input of a deep sigmoid net get
    orders of magnitude smaller norms than those near the output: vanishing gradients."""

    def loss(params):
        logits = model.apply({**variables, "params": params}, images)
        return softmax_cross_entropy(logits, labels).mean()

    grads = traverse_util.flatten_dict(jax.grad(loss)(variables["params"]), sep="/")
    return [
        (path.removesuffix("/kernel"), float(jnp.linalg.norm(g)))
        for path, g in grads.items()  # flax keeps the call order in its dicts
        if path.endswith("kernel")
    ]


def input_gradient_norms(
    apply_fn: Callable, variables: dict, sequences: jax.Array, labels: jax.Array
) -> jax.Array:
    """f32[T]: the L2 norm, over the batch and the features, of the mean cross-entropy's
    gradient with respect to each step t of the input f32[B, T, ...] (an image's rows for a
    row-by-row reader), in inference mode; `apply_fn` is `model.apply` (or a state's). For a
    recurrent net the norm at step t measures how much the loss (computed after the last
    step) still depends on what it read at step t: falling towards t = 1 by orders of
    magnitude is the vanishing gradient (Bengio et al. 1994; Hochreiter & Schmidhuber 1997)."""

    def loss(inputs):
        logits = apply_fn(variables, inputs)
        return softmax_cross_entropy(logits, labels).mean()

    grads = jax.grad(loss)(sequences)
    return jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], grads.shape[1], -1) ** 2, axis=(0, 2)))

"""Looking inside training: per-layer gradient norms (vanishing and exploding gradients)."""

from __future__ import annotations

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

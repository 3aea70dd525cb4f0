"""Pure, batched losses. Every function returns the mean over the batch unless it says otherwise.

Shapes: `logits` f32[B, K], `labels` i32[B] (class indices), `predictions`/`targets` f32[B, ...].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over all elements of (predictions - targets)^2; shapes must match."""
    return jnp.mean(jnp.square(predictions - targets))


def binary_cross_entropy_with_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean binary cross-entropy; `logits` f32[B] or f32[B, 1], `labels` in {0, 1} of the same size.

    Computed from logits with log-sigmoid, so it stays finite for logits of any magnitude.
    """
    logits = logits.reshape(labels.shape)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype)))


def softmax_cross_entropy(
    logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
) -> jax.Array:
    """Per-example softmax cross-entropy, f32[B], from logits f32[B, K] and integer labels i32[B].

    With `label_smoothing` = s the target is (1 - s) * one_hot + s / K. Computed in at least float32
    with log-softmax, so logits of +-1e4 give finite values.
    """
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def l2_penalty(params) -> jax.Array:
    """0.5 * sum of squares over every kernel (weight matrix or conv filter) in a parameter tree.

    Biases and BatchNorm scales/offsets are left out, as usual for weight decay: they have one
    value per channel and penalising them only hurts. Multiply by the weight-decay coefficient.
    """
    leaves = [
        leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params) if _is_kernel(path, leaf)
    ]
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return 0.5 * sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)


def kernel_mask(params):
    """A tree of booleans, True where `l2_penalty` and decoupled weight decay apply."""
    return jax.tree_util.tree_map_with_path(_is_kernel, params)


def _is_kernel(path, leaf) -> bool:
    # Flax names weights "kernel"; in a hand-made tree, any matrix or filter bank counts.
    name = getattr(path[-1], "key", getattr(path[-1], "name", "")) if path else ""
    return name == "kernel" or (name not in ("bias", "scale") and getattr(leaf, "ndim", 0) >= 2)

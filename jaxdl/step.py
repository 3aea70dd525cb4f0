"""The training and evaluation steps: pure functions of (state, batch), nothing else.

    state, metrics = train_step(state, batch)
    metrics = eval_step(state, batch)

`batch` is `{"image": f32[B, H, W, C] (or f32[B, D]), "label": i32[B]}`; `eval_step` also reads
an optional `"mask": f32[B]` (1 for real examples, 0 for padding) so that a padded last batch
counts every example exactly once. Options (label smoothing, the L2 coefficient, the pmap axis,
the objective, the target) are keyword arguments, bound with `functools.partial` before
`jax.jit` / `jax.pmap`.

The objective turns the model's outputs and the batch's `target` entry ("label" by default;
"image" for a model that reconstructs its input) into per-example losses and hits. The
default, `classification`, is softmax cross-entropy and argmax accuracy over the last axis, so
it also serves per-pixel labels i32[B, H, W] with logits f32[B, H, W, K] (segmentation); other
tasks (several heads: `jaxdl.tasks.multihead`; reconstruction: `jaxdl.tasks.reconstruction`)
bring their own with the same signature. An objective may return, instead of the hits, a dict
of named per-example figures (a VAE's reconstruction and KL terms): the metrics then carry
those names instead of "accuracy".
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxdl.losses import l2_penalty, softmax_cross_entropy
from jaxdl.state import TrainState, model_variables

AUX_WEIGHT = 0.3  # an auxiliary classifier's share of the loss (Szegedy et al. 2015, 2016)


def classification(
    logits: jax.Array | dict[str, jax.Array], labels: jax.Array, label_smoothing: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """The default objective: per-example softmax cross-entropy f32[B, ...] and hits f32[B, ...]
    (1.0 where the argmax is the label), from logits f32[B, ..., K] and labels i32[B, ...].
    A model with an auxiliary classifier gives `{"logits", "aux"}` in training: the loss then
    adds `AUX_WEIGHT` times the auxiliary head's cross-entropy, and the hits are the main
    head's."""
    if isinstance(logits, dict):
        aux = softmax_cross_entropy(logits["aux"], labels, label_smoothing)
        losses, hits = classification(logits["logits"], labels, label_smoothing)
        return losses + AUX_WEIGHT * aux, hits
    losses = softmax_cross_entropy(logits, labels, label_smoothing)
    return losses, (jnp.argmax(logits, -1) == labels).astype(jnp.float32)


def padded_sequences(
    logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0, pad: int = 0
) -> tuple[jax.Array, jax.Array]:
    """The objective for target sequences padded with `pad`: per-example mean cross-entropy
    f32[B] over the real tokens of labels i32[B, T] (logits f32[B, T, K]), and per-example
    token accuracy f32[B]."""
    real = (labels != pad).astype(jnp.float32)
    count = jnp.maximum(real.sum(-1), 1.0)
    losses = softmax_cross_entropy(logits, labels, label_smoothing)
    hits = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return (losses * real).sum(-1) / count, (hits * real).sum(-1) / count


def step_rng(state: TrainState) -> jax.Array:
    """This step's dropout key: the run key folded with the step, the same on every device.
    Deterministic, so resume reproduces it; `jaxdl.nn.Dropout` folds in each example's
    position in the global batch, so the masks do not depend on the device split."""
    return jax.random.fold_in(state.rng, state.step)


def step_rngs(state: TrainState) -> dict[str, jax.Array]:
    """The RNG streams a training step hands the model: "dropout" (`step_rng`) and "sample"
    (a sampled latent, `jaxdl.models.generative.VAE`), independent of each other."""
    key = step_rng(state)
    return {"dropout": key, "sample": jax.random.fold_in(key, 1)}


def named_figures(hits: jax.Array | dict[str, jax.Array]) -> dict[str, jax.Array]:
    """An objective's second output as named per-example figures: hits are "accuracy"."""
    return hits if isinstance(hits, dict) else {"accuracy": hits}


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    axis_name: str | None = None,
    label_smoothing: float = 0.0,
    l2_weight: float = 0.0,
    objective: Callable = classification,
    target: str = "label",
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on the `objective`'s mean loss, softmax cross-entropy by default
    (+ `l2_weight` * `l2_penalty`).

    Under `jax.pmap(..., axis_name=A)` pass `axis_name=A`: gradients, the new BatchNorm
    statistics and the metrics are averaged across devices (the model's BatchNorm must carry
    the same axis name so the batch statistics are shared too). Returns the new state and
    `{"loss", "accuracy"}` means over the batch (loss without the L2 term; the objective's own
    names instead of "accuracy" where it returns a dict) and `skipped`: 1.0
    when the loss or a gradient was not finite and the update was dropped, else 0.0.
    """
    has_batch_stats = bool(state.batch_stats)

    def loss_fn(params):
        variables = {"params": params}
        if has_batch_stats:
            variables["batch_stats"] = state.batch_stats
        logits, updates = state.apply_fn(
            variables,
            batch["image"],
            train=True,
            rngs=step_rngs(state),
            mutable=["batch_stats"] if has_batch_stats else [],
        )
        losses, hits = objective(logits, batch[target], label_smoothing)
        loss = jnp.mean(losses)
        total = loss + l2_weight * l2_penalty(params) if l2_weight else loss
        figures = {name: jnp.mean(value) for name, value in named_figures(hits).items()}
        return total, (loss, figures, updates)

    grads, (loss, figures, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, **figures}
    batch_stats = updates.get("batch_stats", state.batch_stats)
    if axis_name is not None:
        grads = lax.pmean(grads, axis_name)
        metrics = lax.pmean(metrics, axis_name)
        batch_stats = lax.pmean(batch_stats, axis_name)
    # A step whose loss or gradients are not finite changes nothing but the step counter (so
    # the next step draws fresh dropout masks); `skipped` counts it. Unlike
    # optax.apply_if_finite, no number of bad steps ever lets a bad update through.
    finite = jnp.isfinite(metrics["loss"]) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    updated = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    state = updated.replace(
        params=keep(updated.params, state.params),
        opt_state=keep(updated.opt_state, state.opt_state),
        batch_stats=keep(updated.batch_stats, state.batch_stats),
    )
    metrics["skipped"] = 1.0 - finite.astype(jnp.float32)
    return state, metrics


def predict(state: TrainState, images: jax.Array) -> jax.Array:
    """Logits f32[B, K] of the model in inference mode (running BatchNorm statistics); a
    model with several outputs (a dict: a VAE's) gives them all, each in float32."""
    outputs = state.apply_fn(model_variables(state), images, train=False)
    return jax.tree.map(lambda x: x.astype(jnp.float32), outputs)


def eval_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    axis_name: str | None = None,
    flip_tta: bool = False,
    objective: Callable = classification,
    target: str = "label",
) -> dict[str, jax.Array]:
    """Sums over the real (unmasked) examples: `{"loss_sum", "correct", "count"}` (for an
    objective returning named figures, `"<name>_sum"` for each instead of "correct"). With
    per-pixel labels i32[B, H, W] and logits f32[B, H, W, K] the sums run over pixels.

    Sums rather than means, so that batches of any size, padded or not, add up to exact
    dataset totals; `jaxdl.metrics` turns them into means. With `flip_tta` the logits are the
    mean of the model's logits on the images and on their left-right mirror images
    (test-time augmentation).
    """
    logits = predict(state, batch["image"])
    if flip_tta:
        logits = 0.5 * (logits + predict(state, batch["image"][:, :, ::-1, :]))
    labels = batch[target]
    mask = batch.get("mask", jnp.ones(labels.shape[:1], jnp.float32))
    losses, hits = objective(logits, labels)

    def masked(values: jax.Array) -> jax.Array:
        # per-pixel losses f32[B, H, W] (segmentation): every pixel of a real example counts
        return jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (values.ndim - 1)), values.shape)

    metrics = {"loss_sum": jnp.sum(losses * masked(losses)), "count": jnp.sum(masked(losses))}
    if isinstance(hits, dict):
        metrics |= {f"{name}_sum": jnp.sum(v * masked(v)) for name, v in hits.items()}
    else:
        metrics["correct"] = jnp.sum(hits * masked(hits))
    if axis_name is not None:
        metrics = lax.psum(metrics, axis_name)
    return metrics

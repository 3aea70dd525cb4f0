"""The airbench94 recipe (Keller Jordan 2024) in pure functions: patch whitening from the data,
the optimiser with its parameter groups and triangular schedule, the lookahead average, the
alternating-flip + translate epoch, and flip + shift test-time augmentation.

The reference trains on a summed label-smoothed cross-entropy with PyTorch's coupled weight
decay per group (`weight_decay = wd / lr` so the decay step is `wd`, scaled by the schedule).
Here `jaxdl.step.train_step` takes the batch mean, so the learning rates are multiplied by the
batch size and the decay coefficients divided by it: the same updates.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxdl.models.airbench import whitening_kernel  # noqa: F401 - the recipe's first step


@dataclasses.dataclass(frozen=True)
class Recipe:
    """airbench94's hyper-parameters (the reference's `hyp`)."""

    epochs: float = 9.9
    batch_size: int = 1024
    lr: float = 11.5  # per 1024 examples
    momentum: float = 0.85
    weight_decay: float = 0.0153  # per 1024 examples, decoupled from the learning rate
    bias_scaler: float = 64.0  # BatchNorm biases learn this much faster (no more decay)
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3
    translate: int = 2
    # As the reference (cifar10-airbench's airbench94.py): the average starts as a copy of the
    # state at the first update and the state is put on the average after the last step only.
    lookahead_every: int = 5


def triangle(steps: int, start: float = 0.2, end: float = 0.07, peak: float = 0.23) -> np.ndarray:
    """f64[steps + 1]: the learning-rate multiplier, linear from `start` up to 1 at
    `peak * steps` and down to `end` at `steps`."""
    return np.interp(np.arange(steps + 1), [0, int(peak * steps), steps], [start, 1.0, end])


def param_labels(params) -> dict:
    """Each parameter's optimiser group: "frozen" (whitening kernel, BatchNorm scales),
    "whiten_bias", "norm_bias" (BatchNorm biases) or "other" (convolutions, classifier)."""

    def label(path: tuple[str, ...]) -> str:
        if path[0] == "whiten":
            return "frozen" if path[-1] == "kernel" else "whiten_bias"
        if any(part.startswith("BatchNorm") for part in path):
            return "frozen" if path[-1] == "scale" else "norm_bias"
        return "other"

    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({path: label(path) for path in flat})


def summed_loss_rates(recipe: Recipe) -> tuple[float, float]:
    """(learning rate, weight-decay step) per example of a summed loss, as the reference's
    PyTorch SGD takes them: the per-1024 hyper-parameters divided by Nesterov's step scale."""
    kilostep_scale = 1024 * (1 + 1 / (1 - recipe.momentum))
    return recipe.lr / kilostep_scale, recipe.weight_decay * recipe.batch_size / kilostep_scale


def triangle_schedule(peak_lr: float, total_steps: int):
    """The learning rate at a step: `peak_lr` times `triangle(total_steps)` (held at its last
    value after `total_steps`)."""
    multipliers = jnp.asarray(triangle(total_steps), jnp.float32)
    return lambda step: peak_lr * multipliers[jnp.minimum(step, total_steps)]


def grouped_optimizer(
    learning_rate_fn, momentum: float, weight_decay: float, bias_scaler: float, whiten_until: int
) -> optax.GradientTransformation:
    """Nesterov SGD over `param_labels`' groups for a mean loss: `learning_rate_fn(step)` for
    convolutions and the classifier, `bias_scaler` times it for BatchNorm biases, the same for
    the whitening bias until step `whiten_until` and nothing after, and nothing ever for the
    frozen group. Weight decay is coupled (added to the gradient, so momentum carries it) at
    `weight_decay / scale` for a group whose rate is `scale` times the base one, so every
    parameter shrinks by the same `learning_rate_fn(step) * weight_decay` of itself."""

    def group(scale: float, stop_at: int | None = None):
        rate = lambda step: scale * learning_rate_fn(step)
        if stop_at is not None:
            rate = lambda step, rate=rate: jnp.where(step < stop_at, rate(step), 0.0)
        return optax.chain(
            optax.add_decayed_weights(weight_decay / scale),
            optax.sgd(rate, momentum=momentum, nesterov=True),
        )

    return optax.multi_transform(
        {
            "frozen": optax.set_to_zero(),
            "whiten_bias": group(1.0, whiten_until),
            "norm_bias": group(bias_scaler),
            "other": group(1.0),
        },
        param_labels,
    )


def mean_loss_rates(recipe: Recipe) -> tuple[float, float]:
    """(peak learning rate, coupled weight decay) of `grouped_optimizer` for the batch's mean
    loss that make the reference's summed-loss updates (`summed_loss_rates`): at batch 1024 and
    momentum 0.85, (1.5, 0.00133)."""
    lr, wd = summed_loss_rates(recipe)
    return lr * recipe.batch_size, wd / lr / recipe.batch_size


def optimizer(
    recipe: Recipe, steps_per_epoch: int, total_steps: int
) -> optax.GradientTransformation:
    """`grouped_optimizer` with the recipe's rates and triangular schedule; the whitening bias
    trains for `whiten_bias_epochs` epochs and then stops."""
    lr, weight_decay = mean_loss_rates(recipe)
    return grouped_optimizer(
        triangle_schedule(lr, total_steps),
        recipe.momentum,
        weight_decay,
        recipe.bias_scaler,
        recipe.whiten_bias_epochs * steps_per_epoch,
    )


def lookahead_decay(step: int, total_steps: int) -> float:
    """How much of the average a lookahead update at `step` keeps: 0.95^5 (step / total)^3."""
    return 0.95**5 * (step / total_steps) ** 3


@jax.jit
def lookahead(state, average, decay):
    """Moves the running `average` of (params, batch_stats) towards the state's by 1 - decay
    and puts the state there (the reference's every-5-steps update; with decay 1 it only puts
    the state back on the average, as the reference does at the end of every epoch). Returns
    (state, average)."""
    current = (state.params, state.batch_stats)
    average = jax.tree.map(lambda a, x: decay * a + (1 - decay) * x, average, current)
    return state.replace(params=average[0], batch_stats=average[1]), average


@functools.partial(jax.jit, static_argnames=("translate",))
def epoch_images(key: jax.Array, padded: jax.Array, epoch: int, translate: int) -> jax.Array:
    """One epoch's training images f32[N, H, W, C] from the reflect-padded, once randomly
    flipped set f32[N, H + 2t, W + 2t, C]: each image shifted by a random offset in
    [-t, t]^2, and every image mirrored on odd epochs (alternating flips: over two epochs
    every image is seen both ways)."""
    n, size = padded.shape[0], padded.shape[1] - 2 * translate
    offsets = jax.random.randint(key, (n, 2), 0, 2 * translate + 1)
    crop = lambda image, o: jax.lax.dynamic_slice(
        image, (o[0], o[1], 0), (size, size, image.shape[-1])
    )
    images = jax.vmap(crop)(padded, offsets)
    return jnp.where(epoch % 2 == 1, images[:, :, ::-1, :], images)


def prepare_train_images(key: jax.Array, images: jax.Array, translate: int) -> jax.Array:
    """Normalised training images f32[N, H, W, C] -> randomly flipped once, reflect-padded by
    `translate` (the input of `epoch_images`)."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    images = jnp.where(flip, images[:, :, ::-1, :], images)
    pad = ((0, 0), (translate, translate), (translate, translate), (0, 0))
    return jnp.pad(images, pad, mode="reflect")


def tta_logits(predict, images: jax.Array) -> jax.Array:
    """airbench's test-time augmentation level 2: the mean of the logits on the images and their
    mirror, averaged half and half with the same on the images shifted by one pixel up-left
    and down-right (reflect padding)."""
    mirror = lambda x: 0.5 * (predict(x) + predict(x[:, :, ::-1, :]))
    h, w = images.shape[1:3]
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = [padded[:, :h, :w], padded[:, 2 : h + 2, 2 : w + 2]]
    return 0.5 * mirror(images) + 0.25 * (mirror(shifted[0]) + mirror(shifted[1]))

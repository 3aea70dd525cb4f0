"""One airbench94 training run through the one loop (`jaxdl.loop.fit`): the recipe's data
pipeline as the loop's batches, its lookahead average and its frozen-whitening step as hooks.

The step is `jaxdl.step.train_step`. After the whitening bias stops training (epoch
`whiten_bias_epochs`), the state's model is swapped for one that stops the gradient below the
first layer (as PyTorch skips it for parameters without `requires_grad`); the loop compiles
that second step once, apart from the training time.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator

import jax
import jax.numpy as jnp

from jaxdl import data as data_lib
from jaxdl.data.sources import ArrayDataset
from jaxdl.loop import FitResult, Hook, Progress, fit
from jaxdl.models.airbench import init_whitening
from jaxdl.recipes import airbench94
from jaxdl.rundir import RunDir
from jaxdl.state import TrainState, create_train_state
from jaxdl.step import train_step


@jax.jit
def gather(images: jax.Array, labels: jax.Array, rows: jax.Array) -> dict[str, jax.Array]:
    """The batch of `rows`: `{"image": f32[B, H, W, C], "label": i32[B]}`."""
    return {"image": images[rows], "label": labels[rows]}


class Lookahead(Hook):
    """airbench94's lookahead: every `every` steps the running average of (params, batch_stats)
    moves towards the state and the state is put on it (`airbench94.lookahead`); after the
    last epoch the state ends on the average."""

    def __init__(self, every: int, total_steps: int):
        self.every, self.total_steps, self.average = every, total_steps, None

    def after_step(self, state: TrainState, step: int) -> TrainState:
        if step % self.every:
            return state
        if self.average is None:
            # a copy: the step donates the state's buffers
            self.average = jax.tree.map(jnp.copy, (state.params, state.batch_stats))
            return state
        decay = airbench94.lookahead_decay(step, self.total_steps)
        state, self.average = airbench94.lookahead(state, self.average, decay)
        return state

    def after_epoch(self, progress: Progress) -> Progress:
        if progress.epoch < progress.epochs or self.average is None:
            return progress
        state, self.average = airbench94.lookahead(progress.state, self.average, 1.0)
        return dataclasses.replace(progress, state=state)


class FreezeWhitening(Hook):
    """From epoch `whiten_bias_epochs` + 1 on (1-based), the state's model stops the gradient
    below the whitening layer, whose parameters no longer train."""

    def __init__(self, frozen_apply, whiten_bias_epochs: int):
        self.frozen_apply, self.first_frozen = frozen_apply, whiten_bias_epochs + 1

    def before_epoch(self, progress: Progress) -> Progress:
        if progress.epoch < self.first_frozen:
            return progress
        return dataclasses.replace(
            progress, state=progress.state.replace(apply_fn=self.frozen_apply)
        )


def initial_state(model, recipe: airbench94.Recipe, key, images, steps_per_epoch: int, total):
    """The recipe's optimizer and a fresh state whose whitening kernel comes from the first
    5,000 normalised training `images`."""
    tx = airbench94.optimizer(recipe, steps_per_epoch, total)
    state = create_train_state(model, tx, key, (1, *images.shape[1:]))
    params = init_whitening(state.params, images[:5000])
    return state.replace(params=params, opt_state=tx.init(params))


def train(
    model, recipe: airbench94.Recipe, train_set: ArrayDataset, seed: int, workdir: str, quiet: bool
) -> tuple[FitResult, data_lib.Preprocess]:
    """Trains `model` (`airbench94`) on `train_set` with `recipe` and seed `seed`; returns the
    loop's result and the normalisation the test images need."""
    mean, std = data_lib.channel_stats(train_set.images)
    images = jax.jit(data_lib.normalize, static_argnums=(1, 2))(train_set.images, mean, std)
    labels = jnp.asarray(train_set.labels)
    init_key, flip_key, data_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    n = len(train_set)
    steps_per_epoch = n // recipe.batch_size
    total_steps = math.ceil(steps_per_epoch * recipe.epochs)
    state = initial_state(model, recipe, init_key, images, steps_per_epoch, total_steps)
    padded = airbench94.prepare_train_images(flip_key, images, recipe.translate)

    def batches(epoch: int, start: int) -> Iterator[dict[str, jax.Array]]:
        # loop epochs count from 1, the recipe's (alternating flips) from 0
        epoch_key, order_key = jax.random.split(jax.random.fold_in(data_key, epoch - 1))
        epoch_images = airbench94.epoch_images(epoch_key, padded, epoch - 1, recipe.translate)
        order = jax.random.permutation(order_key, n)
        steps = min(steps_per_epoch, total_steps - (epoch - 1) * steps_per_epoch)
        for index in range(start, steps):
            rows = order[index * recipe.batch_size : (index + 1) * recipe.batch_size]
            yield gather(epoch_images, labels, rows)

    # compiled before training (both models' lookahead), so the loop's times hold no compilation
    frozen = model.clone(freeze_whitening=True)
    jax.block_until_ready(airbench94.epoch_images(data_key, padded, 0, recipe.translate))
    for variant in (state, state.replace(apply_fn=frozen.apply)):
        warm = jax.tree.map(jnp.copy, (state.params, state.batch_stats))
        jax.block_until_ready(airbench94.lookahead(jax.tree.map(jnp.copy, variant), warm, 0.5))
    step = jax.jit(
        functools.partial(train_step, label_smoothing=recipe.label_smoothing), donate_argnums=0
    )
    result = fit(
        state,
        train_step=step,
        batches=batches,
        steps_per_epoch=steps_per_epoch,
        epochs=math.ceil(recipe.epochs),
        rundir=RunDir(workdir),
        quiet=quiet,
        hooks=(
            FreezeWhitening(frozen.apply, recipe.whiten_bias_epochs),
            Lookahead(recipe.lookahead_every, total_steps),
        ),
    )
    return result, data_lib.Preprocess(mean, std)

"""Fit a run's epoch count to a training-time budget.

A schedule such as warm-up + cosine needs its length before the first step, and how many
epochs fit in an hour differs several-fold between machines (1.7x between two of this project's
2-core CPUs; far more against an accelerator). So `calibrate` times a few real train steps and
one validation pass on the machine the run is on, and `epochs_within_budget` turns those timings
into the most epochs that fit, capped by the `--epochs` the user allows.

A few steps predict an hour's pace only roughly (these shared machines drift by ~10 % between
the first minutes and the rest), so a run re-plans once, after `replan_epoch` epochs, from
how long its own epochs took (`epochs_after_replan`). At that point a warm-up + cosine
schedule is still at its peak, and a few epochs more or fewer change its learning rate there
by less than 0.5 %.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxdl.data.device import DeviceDataset, Preprocess, train_batches
from jaxdl.loop import evaluate


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per train step (median of timed chunks) and per validation pass, and the
    seconds the whole calibration took (compiles included)."""

    step_seconds: float
    eval_seconds: float
    total_seconds: float


def epoch_seconds(step_seconds: float, steps_per_epoch: int, eval_seconds: float) -> float:
    """Seconds of one epoch: `steps_per_epoch` train steps plus one validation pass."""
    return step_seconds * steps_per_epoch + max(eval_seconds, 0.0)


def epochs_within_budget(
    budget_seconds: float,
    step_seconds: float,
    steps_per_epoch: int,
    eval_seconds: float,
    max_epochs: int,
) -> int:
    """The most whole epochs (each `steps_per_epoch` train steps plus one validation pass) that
    fit in `budget_seconds`, between 1 and `max_epochs`."""
    if budget_seconds <= 0 or step_seconds <= 0 or steps_per_epoch < 1 or max_epochs < 1:
        raise ValueError(
            f"need a positive budget, step time, steps per epoch and epoch cap, got "
            f"{budget_seconds}, {step_seconds}, {steps_per_epoch}, {max_epochs}."
        )
    seconds = epoch_seconds(step_seconds, steps_per_epoch, eval_seconds)
    return max(1, min(max_epochs, int(budget_seconds // seconds)))


def replan_epoch(planned_epochs: int) -> int | None:
    """After which epoch a run planned for `planned_epochs` re-plans: a tenth of the way in (at
    least after epoch 2), or None when the plan is too short for that to leave epochs to
    change."""
    epoch = max(2, planned_epochs // 10)
    return epoch if epoch < planned_epochs else None


def epochs_after_replan(
    budget_seconds: float, seconds_per_epoch: Sequence[float], max_epochs: int
) -> int:
    """The run's new total epoch count, given how many seconds each of its epochs so far took
    (training plus validation): those epochs plus as many more of their median length as fit
    in what is left of `budget_seconds`; at least one more, at most `max_epochs` in all."""
    if not seconds_per_epoch or min(seconds_per_epoch) <= 0:
        raise ValueError(
            f"need the positive seconds of at least one epoch, got {seconds_per_epoch}."
        )
    done = len(seconds_per_epoch)
    left = max(budget_seconds - sum(seconds_per_epoch), 0.0)
    more = int(left // statistics.median(seconds_per_epoch))
    return min(max_epochs, done + max(1, more))


def calibrate(
    train_fn: Callable,
    eval_fn: Callable,
    state,
    train_data: DeviceDataset,
    val_data: DeviceDataset | None,
    preprocess: Preprocess,
    batch_size: int,
    eval_batch_size: int,
    key: jax.Array,
    warmup_steps: int = 10,
    chunks: int = 4,
    chunk_steps: int = 10,
) -> Timing:
    """Times `train_fn` on real batches (after one compiling step and `warmup_steps` untimed
    ones, which run slower here; then `chunks` chunks of `chunk_steps` steps each, blocking on
    the result) and `eval_fn` over `val_data` (after one compiling pass). Works on a copy of
    `state` (the train step donates its input), so the caller's state is untouched; the batches
    come from `key`, which the caller should not reuse for training so that calibration leaves
    the run's data order unchanged."""
    start = time.perf_counter()
    state = jax.tree.map(jnp.copy, state)
    batches = _endless_batches(train_data, key, batch_size, preprocess)
    for _ in range(1 + warmup_steps):  # the first one compiles
        state, _ = train_fn(state, next(batches))
    jax.block_until_ready(state)
    chunk_seconds = []
    for _ in range(chunks):
        chunk_start = time.perf_counter()
        for _ in range(chunk_steps):
            state, _ = train_fn(state, next(batches))
        jax.block_until_ready(state)
        chunk_seconds.append((time.perf_counter() - chunk_start) / chunk_steps)
    eval_seconds = 0.0
    if val_data is not None and len(val_data):
        # (evaluate reads the totals back to the host, so it has finished when it returns)
        evaluate(eval_fn, state, val_data, eval_batch_size, preprocess)  # compiles
        eval_start = time.perf_counter()
        evaluate(eval_fn, state, val_data, eval_batch_size, preprocess)
        eval_seconds = time.perf_counter() - eval_start
    return Timing(statistics.median(chunk_seconds), eval_seconds, time.perf_counter() - start)


def _endless_batches(data: DeviceDataset, key: jax.Array, batch_size: int, preprocess):
    epoch = 0
    while True:
        yield from train_batches(data, jax.random.fold_in(key, epoch), batch_size, preprocess)
        epoch += 1

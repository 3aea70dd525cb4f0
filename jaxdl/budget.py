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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxdl.data.device import train_batches
from jaxdl.loop import Hook, Progress, log
from jaxdl.optim import create_optimizer


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
    evaluate: Callable[[Any], Any] | None,
    state: Any,
    batches: Callable[[int], Iterable[Any]],
    warmup_steps: int = 10,
    chunks: int = 4,
    chunk_steps: int = 10,
) -> Timing:
    """Times `train_fn` on real batches (after one compiling step and `warmup_steps` untimed
    ones, which run slower here; then `chunks` chunks of `chunk_steps` steps each, blocking on
    the result) and `evaluate(state)`, one validation pass (after one compiling pass).
    `batches(i)` yields the i-th pass over the training data; the caller draws them from a key
    it does not train with, so calibration leaves the run's data order unchanged. Works on a
    copy of `state` (the train step donates its input), so the caller's state is untouched."""
    start = time.perf_counter()
    state = jax.tree.map(jnp.copy, state)
    stream = _endless(batches)
    for _ in range(1 + warmup_steps):  # the first one compiles
        state, _ = train_fn(state, next(stream))
    jax.block_until_ready(state)
    chunk_seconds = []
    for _ in range(chunks):
        chunk_start = time.perf_counter()
        for _ in range(chunk_steps):
            state, _ = train_fn(state, next(stream))
        jax.block_until_ready(state)
        chunk_seconds.append((time.perf_counter() - chunk_start) / chunk_steps)
    eval_seconds = 0.0
    if evaluate is not None:
        jax.block_until_ready(evaluate(state))  # compiles
        eval_start = time.perf_counter()
        jax.block_until_ready(evaluate(state))
        eval_seconds = time.perf_counter() - eval_start
    return Timing(statistics.median(chunk_seconds), eval_seconds, time.perf_counter() - start)


def _endless(batches: Callable[[int], Iterable[Any]]):
    index = 0
    while True:
        yield from batches(index)
        index += 1


def process_zeros_count(epochs: int) -> int:
    """`epochs` as process 0 chose it: every process of a multi-process run must run the same
    schedule, and each timed its own steps."""
    if jax.process_count() > 1:
        epochs = int(multihost_utils.broadcast_one_to_all(np.int32(epochs)))
    return epochs


def planned_epochs(run, evaluators: Sequence[Callable]) -> int:
    """How many epochs of `run` (a `jaxdl.build.Run`; at most its `config.epochs`) fit in
    `config.time_budget_minutes` of training on this machine, from `calibrate`'s timing of the
    run's own steps and validation."""
    config = run.config
    calibration_key = jax.random.fold_in(run.data_key, 2**31 - 1)  # epochs use 1..N
    batches = lambda index: train_batches(
        run.train_data,
        jax.random.fold_in(calibration_key, index),
        config.batch_size,
        run.preprocess,
    )
    evaluate = None
    if evaluators:
        evaluate = lambda state: [evaluator(state) for evaluator in evaluators]
    # about 640 images per chunk: enough steps to time at batch 64, a few seconds at 1024
    steps = max(2, 640 // config.batch_size)
    timing = calibrate(
        run.runner.train,
        evaluate,
        run.runner.put_state(run.state),
        batches,
        warmup_steps=steps,
        chunk_steps=steps,
    )
    epochs = process_zeros_count(
        epochs_within_budget(
            60 * config.time_budget_minutes,
            timing.step_seconds,
            run.steps,
            timing.eval_seconds,
            config.epochs,
        )
    )
    seconds = epoch_seconds(timing.step_seconds, run.steps, timing.eval_seconds)
    cap = " (the --epochs cap)" if epochs == config.epochs else ""
    log(
        f"time budget {config.time_budget_minutes:g} min: train step "
        f"{config.batch_size / timing.step_seconds:,.0f} img/s, validation "
        f"{timing.eval_seconds:.1f} s, so ~{seconds:.0f} s per epoch: {epochs} epochs{cap} "
        f"(calibration took {timing.total_seconds:.1f} s)"
    )
    return epochs


class Replan(Hook):
    """After epoch `at_epoch`, re-plans the run's epoch count from how long its epochs took
    (`epochs_after_replan`, at most `max_epochs`) and lays the schedule over the new count: the
    same optimizer state under a new `tx` (a static field of the state, so the loop compiles
    the step again). `on_change(epochs)` records a changed plan (the run's config)."""

    def __init__(
        self,
        at_epoch: int,
        budget_seconds: float,
        max_epochs: int,
        optimizer_config,
        steps_per_epoch: int,
        on_change: Callable[[int], None],
    ):
        self.at_epoch, self.budget_seconds, self.max_epochs = at_epoch, budget_seconds, max_epochs
        self.optimizer_config, self.steps_per_epoch = optimizer_config, steps_per_epoch
        self.on_change = on_change

    def after_epoch(self, progress: Progress) -> Progress:
        if progress.epoch != self.at_epoch:
            return progress
        seconds = [r["epoch_seconds"] + r.get("val_seconds", 0.0) for r in progress.history]
        epochs = process_zeros_count(
            epochs_after_replan(self.budget_seconds, seconds, self.max_epochs)
        )
        left = self.budget_seconds - sum(seconds)
        log(
            f"time budget: epochs 1-{len(progress.history)} took {sum(seconds):.0f} s "
            f"(~{float(np.median(seconds)):.0f} s each), {max(left, 0) / 60:.1f} min left: "
            f"{epochs} epochs in all (planned {progress.epochs})"
        )
        if epochs == progress.epochs:
            return progress
        self.on_change(epochs)
        tx, learning_rate_fn = create_optimizer(self.optimizer_config, self.steps_per_epoch, epochs)
        return dataclasses.replace(
            progress,
            epochs=epochs,
            state=progress.state.replace(tx=tx),
            learning_rate_fn=learning_rate_fn,
        )

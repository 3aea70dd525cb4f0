"""fit(): THE training loop. Every experiment trains through it, with its own step, batches,
evaluators and hooks.

Per epoch: the train step over the epoch's batches; the evaluators (validation metrics); one
record appended to the run's `metrics.jsonl`; a checkpoint (and one every
`checkpoint_every_steps` steps); early stopping when the selection metric has not improved for
`early_stopping_patience` epochs (then the best epoch's state is returned). A run resumed from
a checkpoint passes its data position as `start_epoch` / `start_index` and continues exactly
where it stopped. SIGTERM or Ctrl-C stops the run at the next step boundary with a checkpoint
(`jaxdl.preemption`): mid-epoch at once, on an epoch's last step after that epoch's record.

What differs between tasks is plugged in, not copied:

* `batches(epoch, start_index)` yields the epoch's batches, any tree of arrays;
* `train_step(state, batch) -> (state, metrics)` (jitted; compiled here, apart from the timing)
  returns scalar metrics, which the record keeps as `train_<name>`; a `skipped` metric (1 for a
  step dropped for a non-finite loss) feeds the NaN guard;
* `evaluators`, each `state -> {name: value}`, add validation metrics to the record;
* `selection` names the metric that picks the best epoch, and its direction;
* `hooks` see the run between steps and epochs and may change it: a lookahead average after
  steps, a new compiled step or state mid-run, a re-planned epoch count.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from jaxdl.checkpoint import Checkpointer
from jaxdl.dispatch import BoundedDispatch
from jaxdl.distributed.setup import is_main_process
from jaxdl.errors import ConfigError, NonFiniteError
from jaxdl.metrics import mean_of_batches
from jaxdl.preemption import Preempted, StopOnSignal
from jaxdl.rundir import RunDir

Evaluator = Callable[[Any], dict[str, float]]


def log(message: str) -> None:
    """A line for the user, written so it does not break a running progress bar (by process 0
    only, in a multi-process run)."""
    if is_main_process():
        tqdm.write(message, file=sys.stdout)


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which record entry picks the best epoch and drives early stopping: `metric` ("max" or
    "min" per `mode`), or `fallback` in runs without that entry (no validation split)."""

    metric: str = "val_accuracy"
    mode: str = "max"
    fallback: str | None = "train_accuracy"

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ConfigError(f"selection mode must be 'max' or 'min', got {self.mode!r}.")

    def score(self, record: dict[str, Any]) -> float | None:
        if self.metric in record:
            return record[self.metric]
        return record.get(self.fallback) if self.fallback else None

    def better(self, score: float, best: float | None) -> bool:
        if best is None:
            return True
        return score > best if self.mode == "max" else score < best


@dataclasses.dataclass
class Progress:
    """The run as hooks see it between epochs; a hook returns it changed (`dataclasses.replace`)
    to swap the state, the train step (compiled again by the loop), the planned number of
    epochs or the learning-rate schedule."""

    epoch: int
    epochs: int
    state: Any
    train_step: Callable
    learning_rate_fn: Callable[[int], float] | None
    history: list[dict[str, Any]]


class Hook:
    """Does nothing; subclasses override what they need."""

    def before_epoch(self, progress: Progress) -> Progress:
        return progress

    def after_step(self, state: Any, step: int) -> Any:
        """Called after global step `step` (1-based) with the new state; returns the state."""
        return state

    def after_epoch(self, progress: Progress) -> Progress:
        return progress


@dataclasses.dataclass
class FitResult:
    """The state to evaluate (the best epoch's when early stopping is on), the history, the
    final schedule and timings."""

    state: Any
    history: list[dict[str, Any]]
    best_epoch: int
    compile_seconds: float
    train_seconds: float
    epochs: int
    learning_rate_fn: Callable[[int], float] | None


def compile_step(step_fn: Callable, state: Any, batch: Any) -> tuple[Callable, float]:
    """`step_fn` compiled for (state, batch) and the seconds it took, so compile time is measured
    apart from training time: ahead of time where the step is a jitted function, else by one
    step on a copy of the state (the step donates its input)."""
    start = time.perf_counter()
    if hasattr(step_fn, "lower"):
        compiled = step_fn.lower(state, batch).compile()
    else:
        compiled = step_fn
        jax.block_until_ready(step_fn(jax.tree.map(jnp.copy, state), batch))
    return compiled, time.perf_counter() - start


def fit(
    state: Any,
    *,
    train_step: Callable,
    batches: Callable[[int, int], Iterable[Any]],
    steps_per_epoch: int,
    epochs: int,
    evaluators: Sequence[Evaluator] = (),
    selection: Selection = Selection(),
    rundir: RunDir | None = None,
    learning_rate_fn: Callable[[int], float] | None = None,
    early_stopping_patience: int | None = None,
    quiet: bool = False,
    checkpointer: Checkpointer | None = None,
    checkpoint_meta: dict[str, Any] | None = None,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_minutes: float | None = None,
    start_epoch: int = 1,
    start_index: int = 0,
    history: list[dict[str, Any]] | None = None,
    best_state: Any = None,
    local_state: Callable[[Any], Any] = lambda state: state,
    max_bad_steps: int = 20,
    hooks: Sequence[Hook] = (),
) -> FitResult:
    """Trains `state` for `epochs` epochs of at most `steps_per_epoch` steps (see the module
    docstring for the plug-ins) and returns a `FitResult`. `history` holds the records of
    epochs finished before a resume, `best_state` the state of its best epoch (with early
    stopping, what is returned unless a later epoch beats it). `local_state` maps the
    (possibly replicated) state to a single-device one for checkpoints. After
    `max_bad_steps` consecutive skipped steps it raises `NonFiniteError` (checked every 20
    steps, so the host rarely waits for the device). Checkpoints are also written every
    `checkpoint_every_steps` steps and every `checkpoint_every_minutes` minutes of wall
    time. On SIGTERM / SIGINT it checkpoints and raises `Preempted` (see the module
    docstring)."""
    steps = steps_per_epoch
    compiled: list[tuple[Callable, Any, Callable]] = []
    compile_seconds = 0.0

    def compiled_step(step_fn: Callable, state: Any, batch: Any) -> Callable:
        """The step compiled for this state's structure (a hook that swaps the optimizer or the
        model's apply function changes it), compiled once per (step, structure)."""
        nonlocal compile_seconds
        structure = jax.tree.structure(state)
        for fn, known, executable in compiled:
            if fn is step_fn and known == structure:
                return executable
        executable, seconds = compile_step(step_fn, state, batch)
        compiled.append((step_fn, structure, executable))
        compile_seconds += seconds
        log(f"compiled the train step in {seconds:.1f} s")
        return executable

    history = list(history or [])
    best_score, best_epoch = None, 0
    for record in history:
        score = selection.score(record)
        if score is not None and selection.better(score, best_score):
            best_score, best_epoch = score, record["epoch"]

    last_save = time.monotonic()

    def save(state: Any, epoch: int, index: int, score: float | None = None) -> None:
        nonlocal last_save
        if checkpointer is not None:
            meta = dict(checkpoint_meta or {}, epoch=epoch, index=index)
            checkpointer.save(local_state(state), meta, score)
        last_save = time.monotonic()

    def stop(signum: int, state: Any, epoch: int, index: int, saved: bool = False) -> Preempted:
        jax.block_until_ready(state)  # no process leaves a collective of this step unfinished
        if not saved:
            save(state, epoch, index)
        if jax.process_count() > 1:  # and none exits before process 0 wrote the checkpoint
            multihost_utils.sync_global_devices("jaxdl: stopped for a signal")
        directory = checkpointer.latest_path(global_step) if checkpointer is not None else None
        return Preempted(signum, global_step, epoch, index, directory)

    def checkpoint_due() -> bool:
        if checkpoint_every_steps and global_step % checkpoint_every_steps == 0:
            return True
        minutes = checkpoint_every_minutes
        return bool(minutes) and time.monotonic() - last_save >= 60 * minutes

    progress = Progress(start_epoch, epochs, state, train_step, learning_rate_fn, history)
    global_step = int(local_state(state).step)
    bad_run = 0  # consecutive steps skipped for a non-finite loss or gradient
    train_seconds = 0.0
    main_process = is_main_process()
    writer = rundir.metrics_writer(history, global_step) if rundir else None
    in_flight = BoundedDispatch()  # the host runs at most a few steps ahead (jaxdl.dispatch)
    signals = StopOnSignal().__enter__()
    stopping = False  # a stop was requested on an epoch's last step: stop after its record
    try:
        while progress.epoch <= progress.epochs:
            for hook in hooks:
                progress = hook.before_epoch(progress)
            epoch, state = progress.epoch, progress.state
            first_index = start_index if epoch == start_epoch else 0
            start, compiled_before = time.perf_counter(), compile_seconds
            epoch_batches = iter(batches(epoch, first_index))
            first = next(epoch_batches, None)
            if first is None:
                raise ConfigError(f"epoch {epoch} has no batches; check the data and batch size.")
            step_fn = compiled_step(progress.train_step, state, first)
            start += compile_seconds - compiled_before  # the epoch's time holds no compilation
            batch_size = jax.tree.leaves(first)[0].shape[0]
            bar = tqdm(
                total=steps * batch_size,
                desc=f"epoch {epoch}/{progress.epochs}",
                unit="img",
                unit_scale=True,
                leave=False,
                disable=quiet or not main_process,
                dynamic_ncols=True,
            )
            batch_metrics, checked = [], 0
            bar.update(first_index * batch_size)
            index = first_index - 1
            for index, batch in enumerate(_chain(first, epoch_batches), start=first_index):
                state, metrics = step_fn(state, batch)
                in_flight(metrics)  # not the state: the next step donates its buffers
                global_step += 1
                for hook in hooks:
                    state = hook.after_step(state, global_step)
                batch_metrics.append(metrics)
                bar.update(batch_size)
                # (the last batch of an epoch is saved by the epoch-end checkpoint below)
                if signals.stop_requested(global_step):
                    if index + 1 < steps:
                        bar.close()
                        raise stop(signals.signum, state, epoch, index + 1)
                    stopping = True
                elif index + 1 < steps and checkpoint_due():
                    save(state, epoch, index + 1)
                if index % 20 == 19 or index == steps - 1:
                    bad_run = _check_finite(
                        batch_metrics[checked:], bad_run, max_bad_steps, global_step
                    )
                    checked = len(batch_metrics)
                    if writer is not None:  # the host has waited for this step already
                        writer.write_step(global_step, jax.device_get(metrics))
                if not quiet and (index % 20 == 0 or index == steps - 1):
                    bar.set_postfix(_postfix(index, steps, metrics))
            bad_run = _check_finite(batch_metrics[checked:], bad_run, max_bad_steps, global_step)
            train_metrics = mean_of_batches(batch_metrics)
            jax.block_until_ready(state)
            seconds = time.perf_counter() - start
            bar.close()
            train_seconds += seconds
            done = index + 1 - first_index

            record = {"epoch": epoch, "step": global_step}
            for name in sorted(train_metrics, key=lambda name: name != "loss"):  # loss first
                if name != "skipped":
                    record[f"train_{name}"] = train_metrics[name]
            record["skipped_steps"] = round(train_metrics.get("skipped", 0.0) * done)
            record["images_per_second"] = done * batch_size / seconds
            record["epoch_seconds"] = seconds
            if progress.learning_rate_fn is not None:
                record["learning_rate"] = float(progress.learning_rate_fn(global_step - 1))
            if evaluators:
                val_start = time.perf_counter()
                for evaluate in evaluators:
                    record.update(evaluate(state))
                record["val_seconds"] = time.perf_counter() - val_start
            history.append(record)
            if writer is not None:
                writer.write(record)
            log(epoch_line(record, progress.epochs))
            score = selection.score(record)
            save(state, epoch + 1, 0, record.get(selection.metric))
            if stopping:
                raise stop(signals.signum, state, epoch + 1, 0, saved=True)

            progress = dataclasses.replace(progress, state=state, history=history)
            if score is not None and selection.better(score, best_score):
                best_score, best_epoch = score, epoch
                if early_stopping_patience:
                    # a copy: the train step donates `state`'s buffers to the next step
                    best_state = jax.tree.map(jnp.copy, state)
            elif early_stopping_patience and epoch - best_epoch >= early_stopping_patience:
                log(
                    f"early stopping: {selection.metric} has not improved for "
                    f"{early_stopping_patience} epochs; using epoch {best_epoch} "
                    f"({_format(selection.metric, best_score)})"
                )
                break
            for hook in hooks:
                progress = hook.after_epoch(progress)
            progress = dataclasses.replace(progress, epoch=epoch + 1)
    finally:
        signals.__exit__()
        if writer is not None:
            writer.close()
    final = progress.state
    if early_stopping_patience and best_state is not None:
        final = best_state
    return FitResult(
        final,
        history,
        best_epoch,
        compile_seconds,
        train_seconds,
        progress.epochs,
        progress.learning_rate_fn,
    )


def _chain(first: Any, rest: Iterable[Any]) -> Iterable[Any]:
    yield first
    yield from rest


def _check_finite(batch_metrics: list, bad_run: int, max_bad_steps: int, global_step: int) -> int:
    """The run of consecutive skipped steps after `batch_metrics`; raises past `max_bad_steps`."""
    if not batch_metrics or "skipped" not in batch_metrics[0]:
        return bad_run
    for flag in jax.device_get([m["skipped"] for m in batch_metrics]):
        bad_run = bad_run + 1 if flag else 0
        if bad_run >= max_bad_steps:
            raise NonFiniteError(
                f"{bad_run} consecutive steps had a non-finite loss or gradient "
                f"(they were skipped; the parameters are those of step "
                f"{global_step - bad_run}, and the checkpoints are intact); lower "
                f"--lr or check the data, then rerun to resume."
            )
    return bad_run


def _format(name: str, value: float) -> str:
    return f"{100 * value:.2f} %" if name.endswith("accuracy") else f"{value:.4f}"


def _postfix(index: int, steps: int, metrics: dict[str, Any]) -> dict[str, str]:
    shown = {"step": f"{index + 1}/{steps}"}
    for name, value in sorted(metrics.items(), key=lambda item: item[0] != "loss"):
        if name != "skipped" and len(shown) < 3:
            shown[_short(name)] = _format(name, float(value)).replace(" ", "")
    return shown


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One log line for an epoch's record: its train and validation metrics and speed."""
    line = f"epoch {record['epoch']:>3}/{epochs} "
    for split, label in (("train", "train"), ("val", "val")):
        names = [k for k in record if k.startswith(f"{split}_") and k != "val_seconds"]
        if names:
            line += f"  {label}" if split == "val" else f" {label}"
            for key in names:
                line += f" {_short(key[len(split) + 1 :])} {_value(key, record[key])}"
    return line + f"  {record['images_per_second']:,.0f} img/s  {record['epoch_seconds']:.1f} s"


def _short(name: str) -> str:
    return {"accuracy": "acc"}.get(name, name)


def _value(key: str, value: float) -> str:
    return f"{100 * value:6.2f} %" if key.endswith("accuracy") else f"{value:.4f}"

"""fit(): the training loop, and the only place with I/O (logs, progress, metrics files,
checkpoints).

Per epoch: train on shuffled, augmented device batches; evaluate on validation; append one
JSON line to `workdir/metrics.jsonl`; save a checkpoint (and every `checkpoint_every_steps`
steps); stop early when validation accuracy has not improved for `early_stopping_patience`
epochs (and then return the best epoch's state). A run resumed from a checkpoint passes its
data position as `start_epoch` / `start_index` and continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from jaxdl.checkpoint import Checkpointer
from jaxdl.data.device import (
    DeviceDataset,
    Preprocess,
    eval_batches,
    steps_per_epoch,
    train_batches,
)
from jaxdl.distributed import is_main_process
from jaxdl.errors import NonFiniteError
from jaxdl.metrics import mean_of_batches, totals_to_means
from jaxdl.state import TrainState


@dataclasses.dataclass
class FitResult:
    """The state to evaluate (the best epoch's when early stopping is on) and the history."""

    state: TrainState
    history: list[dict[str, Any]]
    best_epoch: int
    compile_seconds: float
    train_seconds: float


def log(message: str) -> None:
    """A line for the user, written so it does not break a running progress bar (by process 0
    only, in a multi-process run)."""
    if is_main_process():
        tqdm.write(message, file=sys.stdout)


def evaluate(
    eval_fn: Callable,
    state: TrainState,
    data: DeviceDataset,
    batch_size: int,
    preprocess: Preprocess,
) -> dict[str, float]:
    """Loss and accuracy over every example of `data` exactly once."""
    return totals_to_means(
        eval_fn(state, batch) for batch in eval_batches(data, batch_size, preprocess)
    )


def _compile(step_fn: Callable, state: Any, batch: dict) -> tuple[Callable, float]:
    """Compiles before training, so compile time is measured apart from training time: ahead
    of time where the step is a jitted function, else by one step on a copy of the state (the
    step donates its input)."""
    start = time.perf_counter()
    if hasattr(step_fn, "lower"):
        compiled = step_fn.lower(state, batch).compile()
    else:
        compiled = step_fn
        jax.block_until_ready(step_fn(jax.tree.map(jnp.copy, state), batch))
    return compiled, time.perf_counter() - start


def fit(
    state: TrainState,
    *,
    train_fn: Callable,
    eval_fn: Callable,
    train_data: DeviceDataset,
    val_data: DeviceDataset | None,
    preprocess: Preprocess,
    batch_size: int,
    epochs: int,
    key: jax.Array,
    workdir: str,
    learning_rate_fn: Callable[[int], float] | None = None,
    eval_batch_size: int = 1000,
    early_stopping_patience: int | None = None,
    quiet: bool = False,
    checkpointer: Checkpointer | None = None,
    checkpoint_meta: dict[str, Any] | None = None,
    checkpoint_every_steps: int | None = None,
    start_epoch: int = 1,
    start_index: int = 0,
    history: list[dict[str, Any]] | None = None,
    local_state: Callable[[Any], TrainState] = lambda state: state,
    max_bad_steps: int = 20,
    stop_after_epoch: int | None = None,
) -> FitResult:
    """Trains `state` for `epochs` epochs with `train_fn(state, batch) -> (state, metrics)`
    (already jitted) and returns a `FitResult`. `key` seeds shuffling and augmentation: epoch
    e uses `fold_in(key, e)`, so a resumed run sees the same batches as an uninterrupted one.
    `history` holds the metrics records of epochs finished before a resume. `local_state`
    maps the (possibly replicated) state to a single-device one for checkpoints. After
    `max_bad_steps` consecutive skipped (non-finite) steps it raises `NonFiniteError` (checked
    every 20 steps, so the host rarely waits for the device). With `stop_after_epoch` it
    returns after that epoch, as if interrupted there (a time-budgeted run re-plans its length
    at that point, then calls `fit` again from the next epoch)."""
    steps = steps_per_epoch(len(train_data), batch_size)
    os.makedirs(workdir, exist_ok=True)
    # in a multi-process run, process 0 writes the files and shows the progress
    main_process = is_main_process()
    metrics_path = os.path.join(workdir, "metrics.jsonl") if main_process else os.devnull
    first_batch = next(train_batches(train_data, key, batch_size, preprocess))
    train_fn, compile_seconds = _compile(train_fn, state, first_batch)
    log(f"compiled the train step in {compile_seconds:.1f} s")

    history = list(history or [])
    best_accuracy, best_epoch, best_state = -1.0, 0, None
    for record in history:
        score = record.get("val_accuracy", record["train_accuracy"])
        if score > best_accuracy:
            best_accuracy, best_epoch = score, record["epoch"]

    def save(epoch: int, index: int, val_accuracy: float | None = None) -> None:
        if checkpointer is not None:
            meta = dict(checkpoint_meta or {}, epoch=epoch, index=index)
            checkpointer.save(local_state(state), meta, val_accuracy)

    global_step = int(local_state(state).step)
    bad_run = 0  # consecutive steps skipped for a non-finite loss or gradient
    train_seconds = 0.0
    with open(metrics_path, "w") as metrics_file:
        for record in history:
            metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        last_epoch = min(epochs, stop_after_epoch or epochs)
        for epoch in range(start_epoch, last_epoch + 1):
            first_index = start_index if epoch == start_epoch else 0
            epoch_key = jax.random.fold_in(key, epoch)
            bar = tqdm(
                total=steps * batch_size,
                desc=f"epoch {epoch}/{epochs}",
                unit="img",
                unit_scale=True,
                leave=False,
                disable=quiet or not main_process,
                dynamic_ncols=True,
            )
            start = time.perf_counter()
            batch_metrics, checked = [], 0
            bar.update(first_index * batch_size)
            batches = train_batches(train_data, epoch_key, batch_size, preprocess, first_index)
            for index, batch in enumerate(batches, start=first_index):
                state, metrics = train_fn(state, batch)
                global_step += 1
                batch_metrics.append(metrics)
                bar.update(batch_size)
                # (the last batch of an epoch is saved by the epoch-end checkpoint below)
                if (
                    checkpoint_every_steps
                    and index + 1 < steps
                    and global_step % checkpoint_every_steps == 0
                ):
                    save(epoch, index + 1)
                if index % 20 == 19 or index == steps - 1:
                    flags = jax.device_get([m["skipped"] for m in batch_metrics[checked:]])
                    checked = len(batch_metrics)
                    for flag in flags:
                        bad_run = bad_run + 1 if flag else 0
                    if bad_run >= max_bad_steps:
                        raise NonFiniteError(
                            f"{bad_run} consecutive steps had a non-finite loss or gradient "
                            f"(they were skipped; the parameters are those of step "
                            f"{global_step - bad_run}, and the checkpoints are intact); lower "
                            f"--lr or check the data, then rerun to resume."
                        )
                if not quiet and (index % 20 == 0 or index == steps - 1):
                    bar.set_postfix(
                        step=f"{index + 1}/{steps}",
                        loss=f"{float(metrics['loss']):.4f}",
                        acc=f"{100 * float(metrics['accuracy']):.2f}%",
                    )
            train_metrics = mean_of_batches(batch_metrics)
            jax.block_until_ready(state)
            seconds = time.perf_counter() - start
            bar.close()
            train_seconds += seconds

            record = {
                "epoch": epoch,
                "step": global_step,
                "train_loss": train_metrics["loss"],
                "train_accuracy": train_metrics["accuracy"],
                "skipped_steps": round(train_metrics.get("skipped", 0.0) * len(batch_metrics)),
                "images_per_second": (steps - first_index) * batch_size / seconds,
                "epoch_seconds": seconds,
            }
            if learning_rate_fn is not None:
                record["learning_rate"] = float(learning_rate_fn(global_step - 1))
            if val_data is not None and len(val_data):
                val_start = time.perf_counter()
                val = evaluate(eval_fn, state, val_data, eval_batch_size, preprocess)
                record.update(
                    val_loss=val["loss"],
                    val_accuracy=val["accuracy"],
                    val_seconds=time.perf_counter() - val_start,
                )
            history.append(record)
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            log(_epoch_line(record, epochs))
            save(epoch + 1, 0, record.get("val_accuracy"))

            score = record.get("val_accuracy", record["train_accuracy"])
            if score > best_accuracy:
                best_accuracy, best_epoch = score, epoch
                if early_stopping_patience:
                    # a copy: the train step donates `state`'s buffers to the next step
                    best_state = jax.tree.map(jnp.copy, state)
            elif early_stopping_patience and epoch - best_epoch >= early_stopping_patience:
                log(
                    f"early stopping: validation accuracy has not improved for "
                    f"{early_stopping_patience} epochs; using epoch {best_epoch} "
                    f"({100 * best_accuracy:.2f} %)"
                )
                break
    final = best_state if early_stopping_patience and best_state is not None else state
    return FitResult(final, history, best_epoch, compile_seconds, train_seconds)


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    line = (
        f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f} "
        f"acc {100 * record['train_accuracy']:6.2f} %"
    )
    if "val_accuracy" in record:
        line += f"  val loss {record['val_loss']:.4f} acc {100 * record['val_accuracy']:6.2f} %"
    return line + (f"  {record['images_per_second']:,.0f} img/s  {record['epoch_seconds']:.1f} s")

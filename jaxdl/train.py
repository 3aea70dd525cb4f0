"""train_and_evaluate(config, task): the one training path every experiment runs.

It composes the pieces: `build` (data, model, state, runner: every check before anything
expensive), `budget` (the epoch count that fits a time budget), `checkpoint` (resume),
`loop.fit` (the training), the task (test figures, predictions, plots) and `rundir` (the
run's files). Prints per-epoch lines and ends with the task's headline figure, for
classification `test accuracy: NN.NN %`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
from jax.experimental import multihost_utils

from jaxdl import data as data_lib
from jaxdl.budget import Replan, planned_epochs, replan_epoch
from jaxdl.build import Run, build
from jaxdl.checkpoint import Checkpointer, remove_checkpoints
from jaxdl.config import TrainConfig
from jaxdl.distributed.setup import is_main_process
from jaxdl.loop import FitResult, Hook, Progress, fit, log
from jaxdl.ops.onednn import tuning
from jaxdl.optim import OptimizerConfig, feed_plateau, plateau_scale
from jaxdl.rundir import CONV_CHOICES, RunDir
from jaxdl.state import count_params
from jaxdl.tasks.classification import CLASSIFICATION


def train_and_evaluate(config: TrainConfig, task: Any = CLASSIFICATION) -> dict[str, Any]:
    """Trains `config.model` on `task`'s data and returns the results (also written to the run
    directory's `results.json`)."""
    config.validate()
    start = time.perf_counter()
    run = build(config, task)
    evaluators = task.evaluators(run)
    epochs_cap = config.epochs
    if config.time_budget_minutes:
        epochs = _epochs_to_keep(run)
        if epochs is None:
            epochs = planned_epochs(run, evaluators)
        if epochs != config.epochs:
            run = run.with_epochs(epochs)
            evaluators = task.evaluators(run)
    result = _fit(run, evaluators, epochs_cap)
    # a re-planned run ends with another epoch count and schedule than it started with
    run = dataclasses.replace(
        run,
        config=dataclasses.replace(run.config, epochs=result.epochs),
        learning_rate_fn=result.learning_rate_fn,
    )
    final_state = run.runner.local_state(result.state)
    test_data = data_lib.to_device(run.test)
    results = task.test(run, result.state, test_data) | {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "epochs_planned": result.epochs,
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "wall_seconds": time.perf_counter() - start,
        "parameters": count_params(final_state.params),
        "images_per_second": result.history[-1]["images_per_second"] if result.history else None,
        "parallel": run.runner.mode,
        "devices": run.runner.device_count,
    }
    run.rundir.write_results(results)
    if is_main_process():
        task.outputs(run, final_state, test_data, result.history)
        run.rundir.write_plots_to_events()
    log(
        f"trained {len(result.history)} epochs in {result.train_seconds:.1f} s "
        f"(+{result.compile_seconds:.1f} s compile); wall time {results['wall_seconds']:.1f} s; "
        f"run directory {os.path.abspath(config.workdir)} (config, metrics, checkpoints, plots)"
    )
    task.report(results)
    return results


def _epochs_to_keep(run: Run) -> int | None:
    """A budgeted run resumed from its checkpoints keeps the epoch count it chose when it
    started (its schedule depends on it); None when it is not resuming."""
    if run.config.restart or not run.rundir.has_checkpoint():
        return None
    epochs = int(run.rundir.read_config()["epochs"])
    log(f"time budget: keeping the {epochs} epochs this run chose when it started")
    return epochs


def _fit(run: Run, evaluators: list, epochs_cap: int) -> FitResult:
    """Resumes from the run's checkpoints (or starts over with --restart) and trains; a
    budgeted run re-plans its length once, to at most `epochs_cap` epochs."""
    config, rundir = run.config, run.rundir
    if config.restart and is_main_process():
        remove_checkpoints(rundir.checkpoints)
    if jax.process_count() > 1:  # no process reads checkpoints while process 0 removes them
        multihost_utils.sync_global_devices("jaxdl: checkpoints ready")
    checkpointer = Checkpointer(
        rundir.checkpoints, config.keep_checkpoints, run.task.selection.mode
    )
    state, start_epoch, start_index, history, best_state = run.state, 1, 0, [], None
    resumed = checkpointer.restore_latest(state, config.model, log=log)
    if resumed is not None:
        state, meta = resumed
        if config.early_stopping_patience:  # what the run returns unless a later epoch beats it
            best_state = checkpointer.restore_best(run.state, config.model)
        start_epoch, start_index = meta["epoch"], meta["index"]
        history = rundir.read_metrics(before_epoch=start_epoch)
        tuning.pin(rundir.read_conv_choices(), rundir.file(CONV_CHOICES))
        log(
            f"resuming from {checkpointer.directory} at step {int(state.step)} "
            f"(epoch {start_epoch}, batch {start_index}); --restart starts over"
        )
    rundir.write_config(run.config_values())
    hooks: list[Hook] = [RecordConvChoices(rundir)]
    # A budgeted run re-plans its length once, from its own epochs' times (see jaxdl.budget); a
    # resumed one keeps the count it has (its checkpoints' schedule), and early stopping, which
    # keeps the best epoch's state across the whole run, is left to run in one piece.
    at_epoch = replan_epoch(config.epochs)
    budgeted = config.time_budget_minutes and not config.early_stopping_patience
    if budgeted and resumed is None and at_epoch is not None:
        hooks.append(
            Replan(
                at_epoch,
                60 * config.time_budget_minutes,
                epochs_cap,
                config.optimizer_config(),
                run.steps,
                on_change=lambda epochs: rundir.write_config(
                    run.config_values() | {"epochs": epochs}
                ),
            )
        )
    if config.schedule == "plateau":
        hooks.append(FeedPlateau(config.optimizer_config(), run.runner))
    if run.runner.device_count > 1:
        processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
        log(f"parallel: {run.runner.mode} over {run.runner.device_count} devices{processes}")
    try:
        return fit(
            run.runner.put_state(state),
            train_step=run.runner.train,
            batches=run.batches,
            steps_per_epoch=run.steps,
            epochs=config.epochs,
            evaluators=evaluators,
            selection=run.task.selection,
            rundir=rundir,
            learning_rate_fn=run.learning_rate_fn,
            early_stopping_patience=config.early_stopping_patience,
            quiet=config.quiet,
            checkpointer=checkpointer,
            checkpoint_meta={"model": config.model, "parameters": count_params(state.params)},
            checkpoint_every_steps=config.checkpoint_every_steps,
            checkpoint_every_minutes=config.checkpoint_every_minutes,
            start_epoch=start_epoch,
            start_index=start_index,
            history=history,
            best_state=None if best_state is None else run.runner.put_state(best_state),
            local_state=run.runner.local_state,
            max_bad_steps=config.max_bad_steps,
            hooks=hooks,
        )
    finally:
        checkpointer.close()


class FeedPlateau(Hook):
    """The `plateau` schedule's hook: before each epoch, the last epoch's validation loss
    (training loss without a validation split) goes to the optimizer's reduce-on-plateau
    scale (`jaxdl.optim.feed_plateau`); the step itself only reads the scale. Fed once per
    epoch record, so a resumed run lands on the same scale as an uninterrupted one."""

    def __init__(self, config: OptimizerConfig, runner):
        self.config, self.runner = config, runner

    def before_epoch(self, progress: Progress) -> Progress:
        if not progress.history:
            return progress
        last = progress.history[-1]
        value = last.get("val_loss", last["train_loss"])
        local = self.runner.local_state(progress.state)
        before = plateau_scale(local.opt_state)
        opt_state = feed_plateau(self.config, local.opt_state, value, len(progress.history))
        after = plateau_scale(opt_state)
        if after is not None and before is not None and after < before:
            log(
                f"reduce on plateau: learning rate x {after:.3g} of --lr from epoch "
                f"{progress.epoch} ({self.config.plateau_patience} epochs without improvement)"
            )
        state = self.runner.put_state(local.replace(opt_state=opt_state))
        return dataclasses.replace(progress, state=state)


class RecordConvChoices(Hook):
    """Writes the convolution kernels the run's steps were traced with (`jaxdl.ops.onednn.
    tuning`) to the run directory once they are known and whenever a choice is added, so a
    resumed run takes the same ones; says once how many shapes run on which."""

    def __init__(self, rundir: RunDir):
        self.rundir, self.seen, self.written = rundir, None, {}

    def _record(self) -> None:
        if tuning.changes() == self.seen:  # the per-step price: one int comparison
            return
        self.seen = tuning.changes()
        choices = tuning.choices()
        if choices == self.written:
            return
        if not self.written:
            kinds = [{tuning.parse(c)[0] for c in choice.values()} for choice in choices.values()]
            onednn = sum(kind <= {"onednn", "gemm"} for kind in kinds)
            gemm = sum("gemm" in kind for kind in kinds)
            xla = sum(kind == {"xla"} for kind in kinds)
            log(
                f"convolutions: {onednn} shapes on oneDNN ({gemm} of them with the gemm weight "
                f"gradient), {xla} on XLA, {len(kinds) - onednn - xla} mixed "
                f"({self.rundir.file(CONV_CHOICES)})"
            )
        self.rundir.write_conv_choices(choices)
        self.written = choices

    def after_step(self, state, step: int):
        self._record()
        return state

    def after_epoch(self, progress: Progress) -> Progress:
        self._record()
        return progress

"""train_and_evaluate(config): data + model + optimizer + fit + test, for image classification.

Every classification experiment is a thin main over this: it sets its own defaults in a
`TrainConfig`, and this function does the rest, checking the config before anything expensive.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxdl import data as data_lib
from jaxdl import models, parallel
from jaxdl.budget import (
    calibrate,
    epoch_seconds,
    epochs_after_replan,
    epochs_within_budget,
    replan_epoch,
)
from jaxdl.checkpoint import Checkpointer, remove_checkpoints
from jaxdl.distributed import is_main_process
from jaxdl.errors import ConfigError
from jaxdl.loop import FitResult, evaluate, fit, log
from jaxdl.nn.conv import check_layer_impl, layer_impl
from jaxdl.optim import OptimizerConfig, create_optimizer
from jaxdl.report import class_probabilities, save_run_plots
from jaxdl.state import count_params, create_train_state

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# f32[test examples, classes]: the final model's softmax on the test split, in split order
PREDICTIONS_FILE = "test_probabilities.npy"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one classification run needs. Field names are the command-line options."""

    dataset: str = "mnist"
    data_dir: str | None = None
    model: str = "mlp"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 10
    time_budget_minutes: float = 0.0
    batch_size: int = 128
    eval_batch_size: int = 1000
    lr: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "warmup_cosine"
    warmup_epochs: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    weight_decay_mode: str | None = None
    label_smoothing: float = 0.0
    val_size: int = 5000
    crop_padding: int = 0
    flip: bool = False
    early_stopping_patience: int | None = None
    max_bad_steps: int = 20
    flip_tta: bool = False
    plots: bool = True
    parallel: str = "single"
    dtype: str = "float32"
    layers: str = "auto"
    seed: int = 0
    workdir: str = "runs/default"
    restart: bool = False
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 3
    train_limit: int | None = None
    test_limit: int | None = None
    save_predictions: bool = False
    quiet: bool = False

    def optimizer_config(self) -> OptimizerConfig:
        return OptimizerConfig(
            name=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            weight_decay_mode=self.weight_decay_mode,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
        )

    def validate(self) -> None:
        """Raises `ConfigError` for any option that cannot work, before data is loaded."""
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"--{name} must be a positive integer, got {getattr(self, name)}."
                )
        if not 0 <= self.time_budget_minutes < float("inf"):
            raise ConfigError(
                f"--time_budget_minutes must be 0 (off) or a positive number of minutes, got "
                f"{self.time_budget_minutes}."
            )
        check_layer_impl(self.layers)
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown --dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}.")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.model not in models.names():
            raise ConfigError(
                f"unknown model {self.model!r}; known models: {', '.join(models.names())}."
            )
        self.optimizer_config().validate()


def load_splits(config: TrainConfig):
    """(train, validation, test) host datasets: validation carved from TFDS's train split."""
    full_train = data_lib.load(config.dataset, "train", config.data_dir, limit=config.train_limit)
    test = data_lib.load(config.dataset, "test", config.data_dir, limit=config.test_limit)
    val_size = (
        min(config.val_size, len(full_train) // 10) if config.train_limit else config.val_size
    )
    train, val = data_lib.train_val_split(full_train, val_size, seed=config.seed)
    for name, split in (("train", train), ("test", test)):
        check_labels(name, split.labels, full_train.num_classes)
    return train, val, test


def check_labels(split: str, labels, num_classes: int) -> None:
    """Labels outside [0, num_classes) make optax's cross-entropy silently NaN: refuse them."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ConfigError(
            f"{split} labels must lie in [0, {num_classes}), found {low}..{high}; fix the data "
            f"or its class list."
        )


def check_model_fits(model, config: TrainConfig, image_shape: tuple[int, ...]) -> None:
    """Traces the model on one image (shapes only, nothing allocated or compiled) so that an
    input it cannot take stops with one sentence instead of an XLA traceback."""
    try:
        jax.eval_shape(
            lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *image_shape)), train=False)
        )
    except Exception as error:  # noqa: BLE001 - any failure here means the shape does not fit
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        raise ConfigError(
            f"{config.dataset} images of {'x'.join(map(str, image_shape))} do not fit model "
            f"{config.model!r} ({type(error).__name__}: {reason}); choose a model built for "
            f"this input size."
        ) from None


def initial_state(
    config: TrainConfig, num_classes: int, image_shape: tuple[int, ...], steps_per_epoch: int
):  # -> (TrainState, learning_rate_fn, data_key); the state is on one device
    """The run's model, optimizer and fresh state: `(state, learning_rate_fn, data_key)`, all
    decided by `config.seed` (`data_key` seeds shuffling and augmentation)."""
    model = models.create(
        config.model, num_classes=num_classes, dtype=DTYPES[config.dtype], **config.model_options
    )
    model = parallel.model_for_mode(model, config.parallel)
    check_model_fits(model, config, image_shape)
    tx, learning_rate_fn = create_optimizer(
        config.optimizer_config(), steps_per_epoch, config.epochs
    )
    init_key, data_key = jax.random.split(jax.random.PRNGKey(config.seed))
    state = create_train_state(model, tx, init_key, (1, *image_shape))
    return state, learning_rate_fn, data_key


def config_from_file(path: str) -> TrainConfig:
    """The `TrainConfig` a run wrote to its `config.json`."""
    with open(path) as f:
        values = json.load(f)
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in values.items() if k in names})
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model_options.items()}
    return dataclasses.replace(config, model_options=options)


def process_zeros_count(epochs: int) -> int:
    """`epochs` as process 0 chose it: every process of a multi-process run must run the same
    schedule, and each timed its own steps."""
    if jax.process_count() > 1:
        epochs = int(multihost_utils.broadcast_one_to_all(np.int32(epochs)))
    return epochs


def budget_epochs(
    config: TrainConfig, runner, state, train_data, val_data, preprocess, steps: int, key
) -> int:
    """How many epochs (at most `config.epochs`) fit in `config.time_budget_minutes` of training
    on this machine, from `budget.calibrate`'s timing of the run's own steps. A run resumed from
    its checkpoints keeps the count it chose when it started (its schedule depends on it)."""
    previous = os.path.join(config.workdir, "config.json")
    latest = os.path.join(config.workdir, "checkpoints", "latest")
    resuming = os.path.isdir(latest) and os.listdir(latest) and os.path.exists(previous)
    if resuming and not config.restart:
        epochs = config_from_file(previous).epochs
        log(f"time budget: keeping the {epochs} epochs this run chose when it started")
        return epochs
    calibration_key = jax.random.fold_in(key, 2**31 - 1)  # epochs use fold_in(key, 1..N)
    timing = calibrate(
        runner.train,
        runner.evaluate,
        runner.put_state(state),
        train_data,
        val_data,
        preprocess,
        config.batch_size,
        config.eval_batch_size,
        calibration_key,
    )
    epochs = process_zeros_count(
        epochs_within_budget(
            60 * config.time_budget_minutes,
            timing.step_seconds,
            steps,
            timing.eval_seconds,
            config.epochs,
        )
    )
    seconds = epoch_seconds(timing.step_seconds, steps, timing.eval_seconds)
    cap = " (the --epochs cap)" if epochs == config.epochs else ""
    log(
        f"time budget {config.time_budget_minutes:g} min: train step "
        f"{config.batch_size / timing.step_seconds:,.0f} img/s, validation "
        f"{timing.eval_seconds:.1f} s, so ~{seconds:.0f} s per epoch: {epochs} epochs{cap} "
        f"(calibration took {timing.total_seconds:.1f} s)"
    )
    return epochs


def replanned_epochs(config: TrainConfig, history: list[dict[str, Any]], cap: int) -> int:
    """The budgeted run's epoch count re-planned from how long its epochs so far took
    (`budget.epochs_after_replan`; at most `cap`, the user's --epochs)."""
    seconds = [r["epoch_seconds"] + r.get("val_seconds", 0.0) for r in history]
    budget_seconds, spent = 60 * config.time_budget_minutes, sum(seconds)
    epochs = process_zeros_count(epochs_after_replan(budget_seconds, seconds, cap))
    left = budget_seconds - spent
    log(
        f"time budget: epochs 1-{len(history)} took {spent:.0f} s "
        f"(~{float(np.median(seconds)):.0f} s each), {max(left, 0) / 60:.1f} min left: "
        f"{epochs} epochs in all (planned {config.epochs})"
    )
    return epochs


def replan_and_finish(
    config: TrainConfig,
    first: FitResult,
    epochs_cap: int,
    steps: int,
    fit_options: dict[str, Any],
    save_config: Callable[[TrainConfig], None],
) -> tuple[FitResult, TrainConfig, Callable]:
    """The rest of a budgeted run that `fit` stopped after its first epochs: re-plans the epoch
    count from their times (`replanned_epochs`), lays the schedule over the new count (the same
    optimizer state; `tx` is a static field of the state, so the step compiles again), and
    trains the remaining epochs. Returns the whole run's result, config and schedule."""
    epochs = replanned_epochs(config, first.history, epochs_cap)
    state = first.state
    if epochs != config.epochs:
        config = dataclasses.replace(config, epochs=epochs)
        save_config(config)
    tx, learning_rate_fn = create_optimizer(config.optimizer_config(), steps, config.epochs)
    state = state.replace(tx=tx)
    rest = fit(
        state,
        epochs=config.epochs,
        learning_rate_fn=learning_rate_fn,
        start_epoch=len(first.history) + 1,
        history=first.history,
        **fit_options,
    )
    result = FitResult(
        rest.state,
        rest.history,
        rest.best_epoch,
        first.compile_seconds + rest.compile_seconds,
        first.train_seconds + rest.train_seconds,
    )
    return result, config, learning_rate_fn


def write_config(config: TrainConfig, mean, std) -> None:
    """`workdir/config.json`: the run's config and its data's channel statistics (process 0)."""
    if is_main_process():
        with open(os.path.join(config.workdir, "config.json"), "w") as f:
            json.dump(dataclasses.asdict(config) | {"mean": mean, "std": std}, f, indent=2)


def prepare_workdir(workdir: str) -> None:
    """Creates the run directory, or says in one sentence why it cannot."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test.{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        raise ConfigError(
            f"cannot write to the run directory {workdir!r} ({error.strerror}); "
            f"choose another --workdir."
        ) from None


def read_history(workdir: str, before_epoch: int) -> list[dict[str, Any]]:
    """The metrics records of epochs before `before_epoch` from `workdir/metrics.jsonl`."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["epoch"] < before_epoch]


def train_and_evaluate(config: TrainConfig) -> dict[str, Any]:
    """Trains `config.model` on `config.dataset` and returns the results (also written to
    `workdir/results.json`). Prints per-epoch lines and ends with `test accuracy: NN.NN %`."""
    config.validate()
    # Steps are traced inside; the layer implementation is read when they are.
    with layer_impl(config.layers):
        return _train_and_evaluate(config)


def _train_and_evaluate(config: TrainConfig) -> dict[str, Any]:
    runner = parallel.create_runner(
        config.parallel,
        label_smoothing=config.label_smoothing,
        l2_weight=config.optimizer_config().l2_weight(),
    )
    parallel.check_divisible(config.batch_size, runner.device_count)
    parallel.check_divisible(config.eval_batch_size, runner.device_count, "evaluation batch size")
    prepare_workdir(config.workdir)
    start = time.perf_counter()
    train, val, test = load_splits(config)
    steps = data_lib.steps_per_epoch(len(train), config.batch_size)
    mean, std = data_lib.channel_stats(train.images)
    preprocess = data_lib.Preprocess(
        mean, std, data_lib.Augmentation(config.crop_padding, config.flip)
    )
    log(
        f"{config.dataset}: {len(train):,} train / {len(val):,} validation / {len(test):,} test "
        f"images of {'x'.join(map(str, train.image_shape))}, {train.num_classes} classes"
    )

    state, learning_rate_fn, data_key = initial_state(
        config, train.num_classes, train.image_shape, steps
    )
    log(f"{config.model}: {count_params(state.params):,} parameters")
    train_data = data_lib.to_device(train)
    val_data = data_lib.to_device(val) if len(val) else None
    epochs_cap = config.epochs
    if config.time_budget_minutes:
        epochs = budget_epochs(
            config, runner, state, train_data, val_data, preprocess, steps, data_key
        )
        if epochs != config.epochs:
            # the schedule's length is part of the optimizer: build the state again (same seed,
            # same initial parameters)
            config = dataclasses.replace(config, epochs=epochs)
            state, learning_rate_fn, data_key = initial_state(
                config, train.num_classes, train.image_shape, steps
            )

    start_epoch, start_index, history = 1, 0, []
    if config.restart and is_main_process():
        remove_checkpoints(os.path.join(config.workdir, "checkpoints"))
    if jax.process_count() > 1:  # no process reads checkpoints while process 0 removes them
        multihost_utils.sync_global_devices("jaxdl: checkpoints ready")
    checkpointer = Checkpointer(
        os.path.join(config.workdir, "checkpoints"), config.keep_checkpoints
    )
    resumed = checkpointer.restore_latest(state, config.model, log=log)
    if resumed is not None:
        state, meta = resumed
        start_epoch, start_index = meta["epoch"], meta["index"]
        history = read_history(config.workdir, before_epoch=start_epoch)
        log(
            f"resuming from {checkpointer.directory} at step {int(state.step)} "
            f"(epoch {start_epoch}, batch {start_index}); --restart starts over"
        )
    main_process = is_main_process()  # in a multi-process run, process 0 writes the files
    write_config(config, mean, std)
    # A budgeted run re-plans its length once, from its own epochs' times (see jaxdl.budget); a
    # resumed one keeps the count it has (its checkpoints' schedule), and early stopping, which
    # keeps the best epoch's state across the whole run, is left to run in one piece.
    replan_after = None
    if config.time_budget_minutes and resumed is None and not config.early_stopping_patience:
        replan_after = replan_epoch(config.epochs)

    if runner.device_count > 1:
        processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
        log(f"parallel: {runner.mode} over {runner.device_count} devices{processes}")
    fit_options = dict(
        train_fn=runner.train,
        eval_fn=runner.evaluate,
        local_state=runner.local_state,
        max_bad_steps=config.max_bad_steps,
        train_data=train_data,
        val_data=val_data,
        preprocess=preprocess,
        batch_size=config.batch_size,
        key=data_key,
        workdir=config.workdir,
        eval_batch_size=config.eval_batch_size,
        early_stopping_patience=config.early_stopping_patience,
        quiet=config.quiet,
        checkpointer=checkpointer,
        checkpoint_meta={"model": config.model, "parameters": count_params(state.params)},
        checkpoint_every_steps=config.checkpoint_every_steps,
    )
    result = fit(
        runner.put_state(state),
        epochs=config.epochs,
        learning_rate_fn=learning_rate_fn,
        start_epoch=start_epoch,
        start_index=start_index,
        history=history,
        stop_after_epoch=replan_after,
        **fit_options,
    )
    if replan_after is not None and len(result.history) == replan_after:
        result, config, learning_rate_fn = replan_and_finish(
            config, result, epochs_cap, steps, fit_options, lambda c: write_config(c, mean, std)
        )
    checkpointer.close()
    test_data = data_lib.to_device(test)
    test_metrics = evaluate(
        runner.evaluate, result.state, test_data, config.eval_batch_size, preprocess
    )
    final_state = runner.local_state(result.state)
    results = {
        "test_accuracy": test_metrics["accuracy"],
        "test_loss": test_metrics["loss"],
        "test_count": test_metrics["count"],
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "epochs_planned": config.epochs,
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "wall_seconds": time.perf_counter() - start,
        "parameters": count_params(final_state.params),
        "images_per_second": result.history[-1]["images_per_second"] if result.history else None,
        "parallel": runner.mode,
        "devices": runner.device_count,
    }
    if config.flip_tta:
        tta = evaluate(
            runner.evaluate_flip, result.state, test_data, config.eval_batch_size, preprocess
        )
        results["test_accuracy_flip_tta"] = tta["accuracy"]
    if main_process:
        with open(os.path.join(config.workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    probabilities = None
    if main_process and (config.save_predictions or config.plots):  # one pass serves both
        probabilities = class_probabilities(final_state, test_data, preprocess)
    if main_process and config.save_predictions:
        np.save(os.path.join(config.workdir, PREDICTIONS_FILE), probabilities.astype(np.float32))
    if config.plots and main_process:
        save_run_plots(
            config.workdir,
            final_state,
            result.history,
            learning_rate_fn,
            steps * config.epochs,
            test,
            preprocess,
            probabilities,
        )
    log(
        f"trained {len(result.history)} epochs in {result.train_seconds:.1f} s "
        f"(+{result.compile_seconds:.1f} s compile); wall time {results['wall_seconds']:.1f} s; "
        f"run directory {os.path.abspath(config.workdir)} (config, metrics, checkpoints, plots)"
    )
    if config.flip_tta:
        log(
            f"test accuracy with flip test-time augmentation: "
            f"{100 * results['test_accuracy_flip_tta']:.2f} %"
        )
    log(f"test accuracy: {100 * test_metrics['accuracy']:.2f} %")
    return results

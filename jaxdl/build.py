"""From a config to a run: the data splits and their checks, the model (its shapes checked with
`jax.eval_shape` before anything is allocated), the initial state and optimizer, and the runner
of the parallel mode. Nothing here trains or writes a file but the run directory's probe."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl import data as data_lib
from jaxdl import models, parallel
from jaxdl.checkpoint import Checkpointer, trained_weights
from jaxdl.config import DTYPES, TrainConfig, config_from_values
from jaxdl.data.device import DeviceDataset, Preprocess
from jaxdl.data.sources import ArrayDataset
from jaxdl.errors import ConfigError
from jaxdl.loop import log
from jaxdl.optim import create_optimizer
from jaxdl.rundir import RunDir
from jaxdl.state import TrainState, count_params, create_train_state, graft


def create_model(config: TrainConfig, num_outputs: int) -> nn.Module:
    """The config's model with `num_outputs` outputs, its dtype and layer implementation, set up
    for the parallel mode (BatchNorm synchronised under pmap)."""
    if config.layers == "onednn" and jax.default_backend() != "cpu":
        raise ConfigError(
            f"--layers onednn runs on the CPU only, and this run's backend is "
            f"{jax.default_backend()}; use --layers auto (XLA's layers there) or plain."
        )
    model = models.create(
        config.model,
        num_classes=num_outputs,
        dtype=DTYPES[config.dtype],
        layers=config.layers,
        **config.model_options,
    )
    return parallel.model_for_mode(model, config.parallel)


def check_model_fits(
    model: nn.Module,
    config: TrainConfig,
    image_shape: tuple[int, ...],
    input_dtype: Any = jnp.float32,
) -> None:
    """Traces the model on one image (shapes only, nothing allocated or compiled) so that an
    input it cannot take stops with one sentence instead of an XLA traceback."""
    try:
        jax.eval_shape(
            lambda: model.init(
                jax.random.PRNGKey(0), jnp.zeros((1, *image_shape), input_dtype), train=False
            )
        )
    except Exception as error:  # noqa: BLE001 - any failure here means the shape does not fit
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        raise ConfigError(
            f"{config.dataset} images of {'x'.join(map(str, image_shape))} do not fit model "
            f"{config.model!r} ({type(error).__name__}: {reason}); choose a model built for "
            f"this input size."
        ) from None


def initial_state(
    config: TrainConfig,
    num_outputs: int,
    image_shape: tuple[int, ...],
    steps_per_epoch: int,
    input_dtype: Any = jnp.float32,
) -> tuple[TrainState, Callable[[int], float], jax.Array]:
    """The run's model, optimizer and fresh state: `(state, learning_rate_fn, data_key)`, all
    decided by `config.seed` (`data_key` seeds shuffling and augmentation); the state is on
    one device."""
    model = create_model(config, num_outputs)
    check_model_fits(model, config, image_shape, input_dtype)
    tx, learning_rate_fn = create_optimizer(
        config.optimizer_config(), steps_per_epoch, config.epochs
    )
    init_key, data_key = jax.random.split(jax.random.PRNGKey(config.seed))
    state = create_train_state(model, tx, init_key, (1, *image_shape), input_dtype)
    if config.init_from:
        state = start_from_trained(state, config.init_from)
    return state, learning_rate_fn, data_key


def start_from_trained(state: TrainState, run_dir: str) -> TrainState:
    """`state` with the weights of the trained run in `run_dir` wherever a parameter (or a
    BatchNorm statistic) has the same path and shape; says in one line how many, and which
    parameters start fresh. The optimizer state is the fresh one's (its statistics are zero:
    moving the parameters does not change its shapes)."""
    trained = trained_weights(run_dir)
    params, taken, fresh = graft(state.params, trained["params"])
    batch_stats, _, _ = graft(state.batch_stats, trained["batch_stats"])
    if not taken:
        raise ConfigError(
            f"--init_from {run_dir!r}: no parameter of this model has a counterpart of the same "
            f"name and shape there; is it a run of the same architecture?"
        )
    fresh_text = f"; fresh: {', '.join(fresh)}" if fresh else ""
    log(
        f"init from {run_dir}: {len(taken)} parameter arrays trained, {len(fresh)} fresh"
        f"{fresh_text}"
    )
    return state.replace(params=params, batch_stats=batch_stats)


@dataclasses.dataclass(frozen=True)
class Trained:
    """A finished (or interrupted) run read back: its latest `state`, its `config` and the
    `preprocess` its inputs went through (the run's own normalisation, no augmentation)."""

    state: TrainState
    config: TrainConfig
    preprocess: Preprocess


def restore_trained(run_dir: str) -> Trained:
    """The run in directory `run_dir` (its config.json and latest checkpoint) for use: to draw,
    look inside or judge with. One sentence when it is not a run directory or has no
    checkpoint yet."""
    rundir = RunDir(run_dir)
    if not os.path.exists(rundir.file("config.json")):
        raise ConfigError(
            f"{run_dir!r} is not a run directory (no config.json); point it at the --workdir "
            f"of a run."
        )
    values = rundir.read_config()
    config = config_from_values(values)
    example = data_lib.load(config.dataset, "test", config.data_dir, limit=1)
    state, _, _ = initial_state(config, example.num_classes, example.image_shape, 1)
    restored = Checkpointer(rundir.checkpoints).restore_latest(state, config.model, log=log)
    if restored is None:
        raise ConfigError(f"{run_dir!r} has no checkpoint yet; train the run first.")
    return Trained(restored[0], config, Preprocess(tuple(values["mean"]), tuple(values["std"])))


@dataclasses.dataclass
class Run:
    """A run ready to train: everything `train_and_evaluate` hands to the loop and the task."""

    config: TrainConfig
    task: Any  # a jaxdl.tasks task
    rundir: RunDir
    runner: parallel.Runner
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    mean: tuple[float, ...]
    std: tuple[float, ...]
    preprocess: Preprocess
    steps: int  # training steps per epoch
    state: TrainState  # the initial state, on one device
    learning_rate_fn: Callable[[int], float]
    data_key: jax.Array
    train_data: DeviceDataset
    val_data: DeviceDataset | None

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, jax.Array]]:
        """Epoch `epoch`'s training batches from batch `start` on: the order and augmentation
        come from `fold_in(data_key, epoch)`, so a resumed run sees the same batches."""
        key = jax.random.fold_in(self.data_key, epoch)
        return data_lib.train_batches(
            self.train_data, key, self.config.batch_size, self.preprocess, start
        )

    def with_epochs(self, epochs: int) -> Run:
        """The same run planned for `epochs` epochs: the schedule's length is part of the
        optimizer, so the state is built again (same seed, same initial parameters)."""
        config = dataclasses.replace(self.config, epochs=epochs)
        state, learning_rate_fn, data_key = self.task.initial_state(
            config, self.task.num_outputs(self.train), self.train.image_shape, self.steps
        )
        state = init_from_data(state, config, self.train, self.preprocess)
        return dataclasses.replace(
            self, config=config, state=state, learning_rate_fn=learning_rate_fn, data_key=data_key
        )

    def config_values(self) -> dict[str, Any]:
        """What `config.json` holds: the config, the task's own options and the training data's
        channel statistics."""
        values = dataclasses.asdict(self.config) | self.task.options()
        return values | {"mean": self.mean, "std": self.std}


def init_from_data(
    state: TrainState, config: TrainConfig, train: ArrayDataset, preprocess: Preprocess
) -> TrainState:
    """`state` with the parameters that its model sets from the training data (airbench's
    whitening layer: `jaxdl.models.data_initializer`) computed from the first 5,000 training
    images, normalised as the run normalises them, and the optimizer state started afresh
    on them; unchanged for other models and for a run that starts from trained weights."""
    initialize = models.data_initializer(config.model)
    if initialize is None or config.init_from or preprocess.tokens:
        return state
    images = preprocess.inputs(jnp.asarray(train.images[:5000]))  # no key: not augmented
    params = initialize(state.params, images)
    return state.replace(params=params, opt_state=state.tx.init(params))


def build(config: TrainConfig, task: Any) -> Run:
    """The `Run` of `config` for `task`; every check that can fail does so here, before training."""
    step = task.train_step(config)  # None: jaxdl.step.train_step with the task's objective
    options = (
        {}
        if step
        else {
            "label_smoothing": config.label_smoothing,
            "l2_weight": config.optimizer_config().l2_weight(),
        }
    )
    runner = parallel.create_runner(
        config.parallel, objective=task.objective, target=task.target, step=step, **options
    )
    parallel.check_divisible(config.batch_size, runner.device_count)
    parallel.check_divisible(config.eval_batch_size, runner.device_count, "evaluation batch size")
    rundir = RunDir(config.workdir)
    rundir.prepare()
    train, val, test = task.splits(config)
    steps = data_lib.steps_per_epoch(len(train), config.batch_size)
    if task.tokens:  # token ids, stored as uint8: no channels to normalise
        mean, std, preprocess = (), (), Preprocess((), (), tokens=True)
    else:
        mean, std = task.normalization(train)
        preprocess = Preprocess(mean, std, task.augmentation(config))
    log(task.describe(config, train, val, test))
    state, learning_rate_fn, data_key = task.initial_state(
        config, task.num_outputs(train), train.image_shape, steps
    )
    state = init_from_data(state, config, train, preprocess)
    log(f"{config.model}: {count_params(state.params):,} parameters")
    return Run(
        config=config,
        task=task,
        rundir=rundir,
        runner=runner,
        train=train,
        val=val,
        test=test,
        mean=mean,
        std=std,
        preprocess=preprocess,
        steps=steps,
        state=state,
        learning_rate_fn=learning_rate_fn,
        data_key=data_key,
        train_data=data_lib.to_device(train),
        val_data=data_lib.to_device(val) if len(val) else None,
    )

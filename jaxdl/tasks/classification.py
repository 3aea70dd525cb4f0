"""Image classification, the task every other one extends: TFDS data with a seeded validation
split, softmax cross-entropy, accuracy on validation and test (optionally with flip test-time
augmentation), the test split's class probabilities and the run's plots."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data as data_lib
from jaxdl.config import TrainConfig
from jaxdl.data.device import DeviceDataset, Preprocess, eval_batches
from jaxdl.data.sources import ArrayDataset
from jaxdl.dispatch import BoundedDispatch
from jaxdl.errors import ConfigError
from jaxdl.loop import Evaluator, Selection, log
from jaxdl.metrics import totals_to_means
from jaxdl.plots.run import save_run_plots
from jaxdl.state import TrainState
from jaxdl.step import classification, predict

if TYPE_CHECKING:
    from jaxdl.build import Run


def evaluate(
    eval_fn: Callable, state: Any, data: DeviceDataset, batch_size: int, preprocess: Preprocess
) -> dict[str, float]:
    """`{"loss", "accuracy", "count"}` of `eval_step` (run by `eval_fn`) over every example of
    `data` exactly once (a few batches in flight at a time: `jaxdl.dispatch`)."""
    bound = BoundedDispatch()
    return totals_to_means(
        bound(eval_fn(state, batch)) for batch in eval_batches(data, batch_size, preprocess)
    )


def class_probabilities(
    state: TrainState, data: DeviceDataset, preprocess: Preprocess, batch_size: int = 1000
) -> np.ndarray:
    """The model's softmax probabilities for every example, in order: f32[N, ..., K]."""
    classify = jax.jit(lambda s, b: jax.nn.softmax(predict(s, b["image"]), -1))
    chunks = [classify(state, batch) for batch in eval_batches(data, batch_size, preprocess)]
    return np.concatenate(jax.device_get(chunks))[: len(data)]


def check_labels(split: str, labels: np.ndarray, num_classes: int) -> None:
    """Labels outside [0, num_classes) make optax's cross-entropy silently NaN: refuse them."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ConfigError(
            f"{split} labels must lie in [0, {num_classes}), found {low}..{high}; fix the data "
            f"or its class list."
        )


def load_splits(config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
    """(train, validation, test) host datasets of `config.dataset`: validation carved from
    TFDS's train split with a seeded, stable split."""
    full_train = data_lib.load(config.dataset, "train", config.data_dir, limit=config.train_limit)
    test = data_lib.load(config.dataset, "test", config.data_dir, limit=config.test_limit)
    val_size = (
        min(config.val_size, len(full_train) // 10) if config.train_limit else config.val_size
    )
    train, val = data_lib.train_val_split(full_train, val_size, seed=config.seed)
    for name, split in (("train", train), ("test", test)):
        check_labels(name, split.labels, full_train.num_classes)
    return train, val, test


class Classification:
    """The classification task (see the module docstring). Subclasses change what differs."""

    # options of the shared vocabulary this task cannot honour: its experiments do not offer them
    unsupported: frozenset[str] = frozenset()
    selection = Selection("val_accuracy", "max")
    objective = staticmethod(classification)
    tokens = False  # inputs are images; a task of token ids (i32 model input) sets it
    input_dtype = jnp.float32
    target = "label"  # the batch entry the objective compares the outputs with

    def options(self) -> dict[str, Any]:
        """The task's own settings, written to `config.json` beside the config."""
        return {}

    def normalization(self, train: ArrayDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std) in [0, 1] units that standardise the model's input: the
        training images' own statistics."""
        return data_lib.channel_stats(train.images)

    def train_step(self, config: TrainConfig) -> Callable | None:
        """The task's own step with its options bound, or None for `jaxdl.step.train_step`
        with the task's objective (every single-network task)."""
        return None

    def initial_state(
        self,
        config: TrainConfig,
        num_outputs: int,
        image_shape: tuple[int, ...],
        steps_per_epoch: int,
    ) -> tuple[Any, Callable[[int], float], jax.Array]:
        """The run's fresh `(state, learning_rate_fn, data_key)` (`jaxdl.build.initial_state`:
        the config's model with `num_outputs` outputs, its optimizer, one device)."""
        from jaxdl.build import initial_state  # build hands tasks its runs: import it late

        return initial_state(config, num_outputs, image_shape, steps_per_epoch, self.input_dtype)

    def splits(self, config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        return load_splits(config)

    def describe(self, config: TrainConfig, train, val, test) -> str:
        return (
            f"{config.dataset}: {len(train):,} train / {len(val):,} validation / {len(test):,} "
            f"test images of {'x'.join(map(str, train.image_shape))}, {train.num_classes} classes"
        )

    def num_outputs(self, train: ArrayDataset) -> int:
        return train.num_classes

    def augmentation(self, config: TrainConfig) -> data_lib.Augmentation:
        return data_lib.Augmentation(config.crop_padding, config.flip)

    def evaluators(self, run: Run) -> list[Evaluator]:
        """Validation loss and accuracy, when there is a validation split."""
        if run.val_data is None:
            return []

        def validation(state) -> dict[str, float]:
            metrics = evaluate(
                run.runner.evaluate,
                state,
                run.val_data,
                run.config.eval_batch_size,
                run.preprocess,
            )
            return {"val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"]}

        return [validation]

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        """The test figures of the trained (placed) `state`; logs their lines, the last one the
        headline figure."""
        config = run.config
        metrics = evaluate(
            run.runner.evaluate, state, test_data, config.eval_batch_size, run.preprocess
        )
        results = {
            "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"],
            "test_count": metrics["count"],
        }
        if config.flip_tta:
            tta = evaluate(
                run.runner.evaluate_flip, state, test_data, config.eval_batch_size, run.preprocess
            )
            results["test_accuracy_flip_tta"] = tta["accuracy"]
        return results

    def report(self, results: dict[str, Any]) -> None:
        if "test_accuracy_flip_tta" in results:
            log(
                f"test accuracy with flip test-time augmentation: "
                f"{100 * results['test_accuracy_flip_tta']:.2f} %"
            )
        log(f"test accuracy: {100 * results['test_accuracy']:.2f} %")

    def outputs(self, run: Run, state: TrainState, test_data: DeviceDataset, history) -> None:
        """Predictions and plots of the final single-device `state` (process 0)."""
        config = run.config
        probabilities = None
        if config.save_predictions or config.plots:  # one pass serves both
            probabilities = class_probabilities(state, test_data, run.preprocess)
        if config.save_predictions:
            run.rundir.save_predictions(probabilities)
        if config.plots:
            save_run_plots(
                run.rundir.plots,
                state,
                history,
                run.learning_rate_fn,
                run.steps * config.epochs,
                run.test,
                run.preprocess,
                probabilities,
            )


CLASSIFICATION = Classification()

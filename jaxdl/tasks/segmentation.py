"""Semantic segmentation of composed MNIST canvases: every pixel classified as background or one
of the ten digits (11 classes), scored by pixel accuracy and intersection-over-union.

The canvases (`jaxdl.data.compose`) hold real MNIST digits at random places: training canvases
from MNIST's training digits (the first `val_size` of them held out for validation), test
canvases from its test digits. The step is every classifier's: the cross-entropy simply runs
over pixels (`jaxdl.step.classification`). No crop or flip augmentation (the mask would have to
follow), so the task does not offer them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from jaxdl import data as data_lib
from jaxdl.config import TrainConfig
from jaxdl.data.compose import compose_digits
from jaxdl.data.device import DeviceDataset
from jaxdl.data.sources import ArrayDataset
from jaxdl.loop import log
from jaxdl.metrics import confusion_matrix, intersection_over_union
from jaxdl.plots.run import save_segmentation_plots
from jaxdl.tasks.classification import Classification, class_probabilities, evaluate

if TYPE_CHECKING:
    from jaxdl.build import Run


@dataclasses.dataclass(frozen=True)
class Segmentation(Classification):
    """Canvases of `canvas` x `canvas` pixels with `digits` digits each; `train_canvases`
    (validation included) and `test_canvases` of them."""

    canvas: int = 48
    digits: int = 2
    train_canvases: int = 12000
    test_canvases: int = 2000
    # MNIST canvases, per-pixel outputs (the fcn family), no augmentation the masks would have
    # to follow, no per-pixel probabilities saved
    unsupported = frozenset(
        {"dataset", "model", "crop_padding", "flip", "flip_tta", "save_predictions"}
    )

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def splits(self, config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        digits = {
            split: data_lib.load("mnist", split, config.data_dir, limit=limit)
            for split, limit in (("train", config.train_limit), ("test", config.test_limit))
        }
        class_names = ("background", *digits["train"].class_names)

        def canvases(split: str, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
            source = digits[split]
            return compose_digits(
                source.images, source.labels, count, self.canvas, self.digits, seed=seed
            )

        train_images, train_masks = canvases("train", self.train_canvases, config.seed)
        test_images, test_masks = canvases("test", self.test_canvases, config.seed + 1)
        val_size = min(config.val_size, self.train_canvases // 10)
        return (
            ArrayDataset(train_images[val_size:], train_masks[val_size:], class_names),
            ArrayDataset(train_images[:val_size], train_masks[:val_size], class_names),
            ArrayDataset(test_images, test_masks, class_names),
        )

    def describe(self, config: TrainConfig, train, val, test) -> str:
        return (
            f"{len(train):,} train / {len(val):,} validation canvases from MNIST's training "
            f"digits, {len(test):,} held-out canvases from its test digits; "
            f"{self.canvas}x{self.canvas}, {self.digits} digits each, "
            f"{100 * np.mean(train.labels != 0):.1f} % digit pixels"
        )

    def augmentation(self, config: TrainConfig) -> data_lib.Augmentation:
        return data_lib.Augmentation()

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        config = run.config
        pixel = evaluate(
            run.runner.evaluate, state, test_data, config.eval_batch_size, run.preprocess
        )
        local = run.runner.local_state(state)
        predicted = class_probabilities(
            local, test_data, run.preprocess, config.eval_batch_size
        ).argmax(-1)
        names = run.test.class_names
        iou = intersection_over_union(
            confusion_matrix(predicted.ravel(), run.test.labels.ravel(), len(names))
        )
        for name, value in zip(names, iou, strict=True):
            log(f"  IoU {name:>10}: {100 * value:5.1f} %")
        return {
            "test_pixel_accuracy": pixel["accuracy"],
            "test_loss": pixel["loss"],
            "test_mean_iou": float(np.nanmean(iou)),
            "test_iou_per_class": dict(zip(names, map(float, iou), strict=True)),
        }

    def report(self, results: dict[str, Any]) -> None:
        classes = len(results["test_iou_per_class"])
        log(
            f"held-out pixel accuracy: {100 * results['test_pixel_accuracy']:.2f} %; "
            f"mean IoU over {classes} classes: {100 * results['test_mean_iou']:.2f} %"
        )

    def outputs(self, run: Run, state: Any, test_data: DeviceDataset, history) -> None:
        if not run.config.plots:
            return
        shown = run.test.take(np.arange(min(6, len(run.test))))
        device = DeviceDataset(jnp.asarray(shown.images), jnp.asarray(shown.labels))
        predicted = class_probabilities(state, device, run.preprocess).argmax(-1)
        save_segmentation_plots(
            run.rundir.plots, history, shown.images, shown.labels, predicted, shown.class_names
        )

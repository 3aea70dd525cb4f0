"""Object detection on composed MNIST canvases, and its one-object form, classification plus
localisation.

`Detection`: 96x96 canvases with 1 to 4 real MNIST digits each (`jaxdl.data.compose`), every
digit's box and class to be found; the model is a centre-point detector (`centernet`), its
loss CenterNet's (`jaxdl.detection.centernet`, an objective of the common step), its figures
COCO's average precision (`jaxdl.detection.evaluation`): AP@0.5 per class, mAP@0.5 and
mAP@[.5:.95] on held-out canvases, mAP@0.5 on the validation canvases every epoch.

`Localisation`: one digit per 64x64 canvas; any classifier of the zoo with 4 extra outputs
gives the class and the box (sigmoid outputs: centre and size as fractions of the canvas),
trained with cross-entropy plus L1 and generalised-IoU box losses; its figures are class
accuracy and the mean IoU of the predicted box with the true one.

Training canvases come from MNIST's training digits less a seeded tenth (the validation
canvases' digits), held-out canvases from its test digits; all are drawn with `canvas_seed`,
so every run (any `--seed`) sees the same canvases. Augmentation shifts and zooms each canvas
with its boxes (`shift_zoom`); no flips, a flipped digit being another symbol.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import data as data_lib
from jaxdl.config import TrainConfig
from jaxdl.data.boxes import BOX, CLASS, unpack
from jaxdl.data.compose import compose_detection
from jaxdl.data.device import DeviceDataset, Preprocess, eval_batches
from jaxdl.data.sources import ArrayDataset
from jaxdl.detection import centernet, evaluation
from jaxdl.errors import ConfigError
from jaxdl.loop import Evaluator, Selection, log
from jaxdl.losses import softmax_cross_entropy
from jaxdl.plots.detection import plot_detections, plot_precision_recall
from jaxdl.plots.run import save_curves
from jaxdl.step import predict
from jaxdl.tasks.classification import Classification, evaluate

if TYPE_CHECKING:
    from jaxdl.build import Run

SHOWN = 9  # held-out canvases drawn with their detections


def detections_of(
    state: Any,
    data: DeviceDataset,
    preprocess: Preprocess,
    batch_size: int,
    max_detections: int,
    score_threshold: float,
) -> list[evaluation.Detections]:
    """Every canvas's detections by a single-device detector `state`, in order: (boxes f32[n, 4],
    classes i32[n], scores f32[n]) of those scoring at least `score_threshold`."""
    found = []
    for batch in eval_batches(data, batch_size, preprocess):
        found.append(
            jax.device_get(centernet.detect(state, batch["image"], max_detections, score_threshold))
        )
    merged = {key: np.concatenate([f[key] for f in found])[: len(data)] for key in found[0]}
    return [
        (boxes[valid], classes[valid], scores[valid])
        for boxes, classes, scores, valid in zip(
            merged["boxes"], merged["classes"], merged["scores"], merged["valid"], strict=True
        )
    ]


def validation_figures(run: Run, state: Any) -> dict[str, float]:
    """The step objective's figures on the validation split: `val_loss` and its named parts."""
    metrics = evaluate(
        run.runner.evaluate, state, run.val_data, run.config.eval_batch_size, run.preprocess
    )
    return {f"val_{name}": value for name, value in metrics.items() if name != "count"}


@dataclasses.dataclass(frozen=True)
class Detection(Classification):
    """Find and classify every digit on a canvas (see the module docstring). The canvases:
    `canvas` pixels square, `min_digits`..`max_digits` digits each, each digit's longer side
    `min_size`..`max_size` pixels, no two boxes overlapping with IoU above `max_iou`;
    `train_canvases` for training, a tenth as many (at most `--val_size`) for validation,
    `test_canvases` held out. Detection keeps the `max_detections` best peaks per canvas
    scoring at least `score_threshold`."""

    canvas: int = 96
    min_digits: int = 1
    max_digits: int = 4
    min_size: int = 20
    max_size: int = 44
    max_iou: float = 0.3
    train_canvases: int = 20000
    test_canvases: int = 2000
    canvas_seed: int = 0
    shift_zoom: float | None = 0.2
    max_detections: int = 100
    score_threshold: float = 0.05
    # MNIST canvases; crops and flips would have to move the boxes (shift_zoom does); the
    # objective has no label smoothing; the predictions file is COCO JSON, always written
    unsupported = frozenset(
        {"dataset", "crop_padding", "flip", "flip_tta", "label_smoothing", "save_predictions"}
    )
    selection = Selection("val_map50", "max", fallback=None)
    objective = staticmethod(centernet.objective)

    def __post_init__(self):
        if self.shift_zoom is not None and not 0 <= self.shift_zoom < 1:
            raise ConfigError(
                f"shift_zoom must be in [0, 1) (or None for no shift), got {self.shift_zoom}."
            )
        if not 0 <= self.score_threshold < 1:
            raise ConfigError(f"score_threshold must be in [0, 1), got {self.score_threshold}.")
        if self.max_detections < 1:
            raise ConfigError(f"max_detections must be at least 1, got {self.max_detections}.")

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def canvases(self, digits: ArrayDataset, count: int, seed: int) -> ArrayDataset:
        images, labels = compose_detection(
            digits.images,
            digits.labels,
            count,
            self.canvas,
            (self.min_digits, self.max_digits),
            (self.min_size, self.max_size),
            self.max_iou,
            seed,
        )
        return ArrayDataset(images, labels, digits.class_names)

    def splits(self, config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        full = data_lib.load("mnist", "train", config.data_dir, limit=config.train_limit)
        test_digits = data_lib.load("mnist", "test", config.data_dir, limit=config.test_limit)
        train_digits, val_digits = data_lib.train_val_split(
            full, len(full) // 10, seed=self.canvas_seed
        )
        val_count = min(config.val_size, self.train_canvases // 10)
        seed = self.canvas_seed
        return (
            self.canvases(train_digits, self.train_canvases, seed),
            self.canvases(val_digits, val_count, seed + 1),
            self.canvases(test_digits, self.test_canvases, seed + 2),
        )

    def describe(self, config: TrainConfig, train, val, test) -> str:
        objects = train.labels[..., -1].sum()
        return (
            f"{len(train):,} train / {len(val):,} validation canvases from MNIST's training "
            f"digits, {len(test):,} held-out canvases from its test digits; {self.canvas}x"
            f"{self.canvas}, {self.digit_count()} ({objects / len(train):.2f} on average) of "
            f"{self.min_size}-{self.max_size} pixels, canvas seed {self.canvas_seed}; "
            f"augmentation: shift_zoom {self.shift_zoom}"
        )

    def digit_count(self) -> str:
        return (
            f"{self.min_digits}-{self.max_digits} digits each, boxes overlapping with IoU <= "
            f"{self.max_iou}"
        )

    def augmentation(self, config: TrainConfig) -> data_lib.Augmentation:
        return data_lib.Augmentation(shift_zoom=self.shift_zoom)

    def detections(self, run: Run, state: Any, data: DeviceDataset) -> list:
        return detections_of(
            run.runner.local_state(state),
            data,
            run.preprocess,
            run.config.eval_batch_size,
            self.max_detections,
            self.score_threshold,
        )

    def scores(self, run: Run, state: Any, data: DeviceDataset, split: ArrayDataset) -> dict:
        """COCO's AP of the detector on `data` (the device copy of `split`)."""
        ap = evaluation.average_precisions(
            self.detections(run, state, data),
            unpack(split.labels),
            split.num_classes,
            max_detections=self.max_detections,
        )
        return evaluation.summary(ap, split.class_names)

    def evaluators(self, run: Run) -> list[Evaluator]:
        """The validation loss and its parts, and mAP@0.5 on the validation canvases."""
        if run.val_data is None:
            return []

        def validation(state) -> dict[str, float]:
            map50 = evaluation.average_precisions(
                self.detections(run, state, run.val_data),
                unpack(run.val.labels),
                run.val.num_classes,
                thresholds=(0.5,),
                max_detections=self.max_detections,
            )
            return validation_figures(run, state) | {"val_map50": float(np.nanmean(map50))}

        return [validation]

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        config = run.config
        loss = evaluate(
            run.runner.evaluate, state, test_data, config.eval_batch_size, run.preprocess
        )
        figures = self.scores(run, state, test_data, run.test)
        for name, value in figures["ap50_per_class"].items():
            log(f"  AP@0.5 digit {name}: {100 * value:6.2f} %")
        return {
            "test_map50": figures["map50"],
            "test_map50_95": figures["map50_95"],
            "test_ap50_per_class": figures["ap50_per_class"],
            "test_loss": loss["loss"],
        }

    def report(self, results: dict[str, Any]) -> None:
        log(f"test mAP@[.5:.95]: {100 * results['test_map50_95']:.2f} %")
        log(f"test mAP@0.5: {100 * results['test_map50']:.2f} %")

    def outputs(self, run: Run, state: Any, test_data: DeviceDataset, history) -> None:
        """The held-out detections as COCO JSON; with plots, canvases with their boxes, the
        precision-recall curves and the training curves."""
        detections = self.detections(run, state, test_data)
        truths = unpack(run.test.labels)
        names = run.test.class_names
        run.rundir.save_detections(*evaluation.to_coco(detections, truths, names))
        if not run.config.plots:
            return
        shown = min(SHOWN, len(run.test))
        plot_detections(
            run.test.images[:shown],
            truths[:shown],
            detections[:shown],
            names,
            f"{run.rundir.plots}/detections.png",
        )
        curves = evaluation.precision_recall_curves(
            detections, truths, names, max_detections=self.max_detections
        )
        plot_precision_recall(
            curves,
            {name: evaluation.average_precision(*curve) for name, curve in curves.items()},
            f"{run.rundir.plots}/precision_recall.png",
        )
        save_curves(run.rundir.plots, history)


def localisation_objective(
    outputs: jax.Array, labels: jax.Array, label_smoothing: float = 0.0, canvas: int = 64
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Classification plus localisation: outputs f32[B, K + 4] (class logits, then the box's
    centre and size as logits of fractions of the canvas) against one-object box labels
    f32[B, 1, 6]. Per-example loss: cross-entropy + 5 x L1 of the box corners in canvas
    fractions + 2 x (1 - generalised IoU) (DETR's weights); figures: class "accuracy" and the
    box's "iou"."""
    num_classes = outputs.shape[-1] - 4
    outputs = outputs.astype(jnp.float32)
    classes = labels[:, 0, CLASS].astype(jnp.int32)
    true = labels[:, 0, BOX] / canvas
    predicted = predicted_boxes(outputs, 1.0)
    cross_entropy = softmax_cross_entropy(outputs[:, :num_classes], classes, label_smoothing)
    l1 = jnp.abs(predicted - true).sum(-1)
    iou, enclosing = box_overlap(predicted, true)
    loss = cross_entropy + 5.0 * l1 + 2.0 * (1.0 - enclosing)
    hits = (jnp.argmax(outputs[:, :num_classes], -1) == classes).astype(jnp.float32)
    return loss, {"accuracy": hits, "iou": iou}


def predicted_boxes(outputs: jax.Array, canvas: float) -> jax.Array:
    """f32[B, 4] (y0, x0, y1, x1) from a localiser's outputs f32[B, K + 4]: the last four are
    logits of the centre (y, x) and size (h, w) as fractions of a `canvas`-pixel canvas."""
    centre_size = jax.nn.sigmoid(outputs[:, -4:])
    centre, half = centre_size[:, :2], 0.5 * centre_size[:, 2:]
    return canvas * jnp.concatenate([centre - half, centre + half], -1)


def box_overlap(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """IoU f32[B] and generalised IoU f32[B] (Rezatofighi et al. 2019: IoU less the part of
    the smallest enclosing box that neither box covers) of boxes f32[B, 4] pairwise."""
    area = lambda x: jnp.prod(jnp.clip(x[:, 2:] - x[:, :2], 0.0), -1)
    inter = jnp.prod(
        jnp.clip(jnp.minimum(a[:, 2:], b[:, 2:]) - jnp.maximum(a[:, :2], b[:, :2]), 0), -1
    )
    union = area(a) + area(b) - inter
    iou = inter / jnp.maximum(union, 1e-9)
    hull = jnp.prod(jnp.maximum(a[:, 2:], b[:, 2:]) - jnp.minimum(a[:, :2], b[:, :2]), -1)
    return iou, iou - (hull - union) / jnp.maximum(hull, 1e-9)


@dataclasses.dataclass(frozen=True)
class Localisation(Detection):
    """One digit per canvas: its class and its box (see the module docstring)."""

    canvas: int = 64
    min_digits: int = 1
    max_digits: int = 1
    selection = Selection("val_iou", "max", fallback="train_iou")
    target = "label"

    @property
    def objective(self):
        return functools.partial(localisation_objective, canvas=self.canvas)

    def __post_init__(self):
        super().__post_init__()
        if self.max_digits != 1:
            raise ConfigError(
                f"localisation finds one object per canvas, got max_digits {self.max_digits}; "
                f"use Detection for several."
            )

    def num_outputs(self, train: ArrayDataset) -> int:
        return train.num_classes + 4

    def digit_count(self) -> str:
        return "one digit each"

    def evaluators(self, run: Run) -> list[Evaluator]:
        """The validation loss, class accuracy and mean IoU."""
        if run.val_data is None:
            return []
        return [functools.partial(validation_figures, run)]

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        metrics = evaluate(
            run.runner.evaluate, state, test_data, run.config.eval_batch_size, run.preprocess
        )
        return {
            "test_mean_iou": metrics["iou"],
            "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"],
        }

    def report(self, results: dict[str, Any]) -> None:
        log(f"test class accuracy: {100 * results['test_accuracy']:.2f} %")
        log(f"test mean IoU: {results['test_mean_iou']:.3f}")

    def outputs(self, run: Run, state: Any, test_data: DeviceDataset, history) -> None:
        """With plots: held-out canvases with the true and the predicted box, and the curves."""
        if not run.config.plots:
            return
        shown = run.test.take(np.arange(min(SHOWN, len(run.test))))
        images = run.preprocess.inputs(jnp.asarray(shown.images))
        outputs = np.asarray(predict(state, images))
        boxes = np.asarray(predicted_boxes(jnp.asarray(outputs), self.canvas))
        classes = outputs[:, :-4].argmax(-1)
        scores = np.asarray(jax.nn.softmax(outputs[:, :-4]).max(-1))
        detections = [
            (boxes[i : i + 1], classes[i : i + 1], scores[i : i + 1]) for i in range(len(shown))
        ]
        plot_detections(
            shown.images,
            unpack(shown.labels),
            detections,
            shown.class_names,
            f"{run.rundir.plots}/localisation.png",
        )
        save_curves(run.rundir.plots, history)

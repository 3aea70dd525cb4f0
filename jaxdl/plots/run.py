"""What a finished run's plots are, per task, written to its `plots/` folder: what
`train_and_evaluate` leaves behind (each task's `outputs` calls one of these) and what
`python -m jaxdl.plots RUN_DIR` regenerates for classification."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxdl.data.augment import normalize
from jaxdl.data.device import Preprocess
from jaxdl.data.sources import ArrayDataset
from jaxdl.metrics import confusion_matrix
from jaxdl.plots import images
from jaxdl.plots.curves import plot_curves, plot_learning_rate
from jaxdl.state import TrainState
from jaxdl.tools import introspect


def save_curves(out: str, history: list[dict[str, Any]]) -> list[str]:
    """A run whose outputs are not one set of classes (several heads): its training curves."""
    return [plot_curves({"run": history}, os.path.join(out, "curves.png"))] if history else []


def save_segmentation_plots(
    out: str,
    history: list[dict[str, Any]],
    canvases: np.ndarray,
    masks: np.ndarray,
    predicted: np.ndarray,
    class_names: tuple[str, ...],
) -> list[str]:
    """A segmentation run: held-out canvases uint8[N, H, W, C] with their true and predicted
    masks i32[N, H, W], and the training curves."""
    path = os.path.join(out, "segmentation.png")
    drawn = images.plot_segmentation(canvases, masks, predicted, class_names, path)
    return [drawn, *save_curves(out, history)]


PLOT_FILES = (
    "curves.png",
    "learning_rate.png",
    "confusion_matrix.png",
    "predictions.png",
    "filters.png",
    "feature_maps.png",
    "saliency.png",
)


def save_run_plots(
    out: str,
    state: TrainState,
    history: list[dict[str, Any]],
    learning_rate_fn: Callable[[int], float],
    total_steps: int,
    test: ArrayDataset,
    preprocess: Preprocess,
    probabilities: np.ndarray,
) -> list[str]:
    """Writes to folder `out` the plots of `PLOT_FILES` that apply to this model (filters,
    feature maps and saliency need a convolution) and returns their paths. `probabilities`
    f32[N, K] are the model's on `test`."""
    paths = []
    if history:
        paths.append(plot_curves({"run": history}, os.path.join(out, "curves.png")))
    paths.append(
        plot_learning_rate(learning_rate_fn, total_steps, os.path.join(out, "learning_rate.png"))
    )
    predictions = probabilities.argmax(-1)
    matrix = confusion_matrix(predictions, test.labels, test.num_classes)
    paths.append(
        images.plot_confusion_matrix(
            matrix, test.class_names, os.path.join(out, "confusion_matrix.png")
        )
    )
    shown = slice(0, min(32, len(test)))
    paths.append(
        images.plot_predictions(
            test.images[shown],
            test.labels[shown],
            predictions[shown],
            test.class_names,
            os.path.join(out, "predictions.png"),
        )
    )
    normalized = normalize(jnp.asarray(test.images[:8]), preprocess.mean, preprocess.std)
    outputs = introspect.conv_outputs(state, normalized[0])
    kernel = introspect.first_conv_kernel(state.params, outputs)
    if kernel is None:
        return paths
    paths.append(images.plot_filters(kernel, os.path.join(out, "filters.png")))
    stages = introspect.conv_stage_outputs(outputs)
    paths.append(
        images.plot_feature_maps(test.images[0], stages, os.path.join(out, "feature_maps.png"))
    )
    maps = introspect.saliency_maps(state, normalized, jnp.asarray(test.labels[:8]))
    titles = [test.class_names[label] for label in test.labels[:8]]
    paths.append(
        images.plot_saliency(test.images[:8], maps, titles, os.path.join(out, "saliency.png"))
    )
    return paths

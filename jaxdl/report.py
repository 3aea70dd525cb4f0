"""Every plot of a run, written to `workdir/plots/`: what `train_and_evaluate` leaves behind and
what `python -m jaxdl.plots RUN_DIR` regenerates."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import viz
from jaxdl.data.augment import normalize
from jaxdl.data.device import DeviceDataset, Preprocess, eval_batches
from jaxdl.data.sources import ArrayDataset
from jaxdl.metrics import confusion_matrix
from jaxdl.state import TrainState
from jaxdl.step import predict

PLOT_FILES = (
    "curves.png",
    "learning_rate.png",
    "confusion_matrix.png",
    "predictions.png",
    "filters.png",
    "feature_maps.png",
    "saliency.png",
)


def class_probabilities(
    state: TrainState, data: DeviceDataset, preprocess: Preprocess, batch_size: int = 1000
) -> np.ndarray:
    """The model's softmax probabilities for every example, in order: f32[N, K]."""
    classify = jax.jit(lambda s, b: jax.nn.softmax(predict(s, b["image"]), -1))
    chunks = [classify(state, batch) for batch in eval_batches(data, batch_size, preprocess)]
    return np.concatenate(jax.device_get(chunks))[: len(data)]


def save_run_plots(
    workdir: str,
    state: TrainState,
    history: list[dict[str, Any]],
    learning_rate_fn: Callable[[int], float],
    total_steps: int,
    test: ArrayDataset,
    preprocess: Preprocess,
    probabilities: np.ndarray | None = None,
) -> list[str]:
    """Writes the plots of `PLOT_FILES` that apply to this model (filters, feature maps and
    saliency need a convolution) and returns their paths. `probabilities` f32[N, K] are the
    model's on `test` where already computed."""
    out = os.path.join(workdir, "plots")
    paths = []
    if history:
        paths.append(viz.plot_curves({"run": history}, os.path.join(out, "curves.png")))
    paths.append(
        viz.plot_learning_rate(
            learning_rate_fn, total_steps, os.path.join(out, "learning_rate.png")
        )
    )
    if probabilities is None:
        device_test = DeviceDataset(jnp.asarray(test.images), jnp.asarray(test.labels))
        probabilities = class_probabilities(state, device_test, preprocess)
    predictions = probabilities.argmax(-1)
    matrix = confusion_matrix(predictions, test.labels, test.num_classes)
    paths.append(
        viz.plot_confusion_matrix(
            matrix, test.class_names, os.path.join(out, "confusion_matrix.png")
        )
    )
    shown = slice(0, min(32, len(test)))
    paths.append(
        viz.plot_predictions(
            test.images[shown],
            test.labels[shown],
            predictions[shown],
            test.class_names,
            os.path.join(out, "predictions.png"),
        )
    )
    images = normalize(jnp.asarray(test.images[:8]), preprocess.mean, preprocess.std)
    outputs = viz.conv_outputs(state, images[0])
    kernel = viz.first_conv_kernel(state.params, outputs)
    if kernel is None:
        return paths
    paths.append(viz.plot_filters(kernel, os.path.join(out, "filters.png")))
    stages = viz.conv_stage_outputs(outputs)
    paths.append(
        viz.plot_feature_maps(test.images[0], stages, os.path.join(out, "feature_maps.png"))
    )
    maps = viz.saliency_maps(state, images, jnp.asarray(test.labels[:8]))
    titles = [test.class_names[label] for label in test.labels[:8]]
    paths.append(
        viz.plot_saliency(test.images[:8], maps, titles, os.path.join(out, "saliency.png"))
    )
    return paths

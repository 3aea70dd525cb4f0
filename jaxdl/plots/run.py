"""What a finished run's plots are, per task, written to its `plots/` folder: what
`train_and_evaluate` leaves behind (each task's `outputs` calls one of these) and what
`python -m jaxdl.plots RUN_DIR` regenerates for classification."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.augment import normalize
from jaxdl.data.device import Preprocess
from jaxdl.data.sources import ArrayDataset
from jaxdl.metrics import confusion_matrix
from jaxdl.plots import images, inside
from jaxdl.plots.curves import plot_curves, plot_learning_rate
from jaxdl.state import TrainState
from jaxdl.tools import attribution, features, introspect


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
    labels = jnp.asarray(test.labels[:8])
    maps = {
        "gradient": np.asarray(attribution.gradient_saliency(state, normalized, labels)),
        "SmoothGrad": np.asarray(
            attribution.smoothgrad(state, normalized, labels, jax.random.key(0))
        ),
    }
    titles = [test.class_names[label] for label in test.labels[:8]]
    paths.append(
        inside.plot_attributions(test.images[:8], maps, titles, os.path.join(out, "saliency.png"))
    )
    return paths


INSIDE_FILES = ("class_visualisations.png", "top_patches.png", "attribution.png")


@dataclasses.dataclass
class Inside:
    """What `look_inside` drew (`paths`), measured (`figures`: JSON-ready) and made: the class
    visualisations as model input f32[K, H, W, C] (`visualisations`), for another network to
    judge."""

    paths: list[str]
    figures: dict[str, Any]
    visualisations: jax.Array


def top_patch_layer(
    state: TrainState, image: jax.Array, layers: Sequence[str]
) -> tuple[str, features.ReceptiveField]:
    """Of the top-level `layers` (in the order they run), the deepest whose units see at most
    half the image's side (their patches still show a part, not the whole picture), and its
    receptive field."""
    chosen = None
    for name in layers:
        field = features.receptive_field(state, image, name)
        if chosen is not None and field.size > image.shape[1] // 2:
            break
        chosen = (name, field)
    return chosen


def look_inside(
    out: str,
    state: TrainState,
    test: ArrayDataset,
    preprocess: Preprocess,
    seed: int = 0,
    shown: int = 8,
    deletion_images: int = 100,
    patch_layer: str | None = None,
    channels: Sequence[int] = tuple(range(6)),
) -> Inside:
    """Looks inside a trained classifier and draws `INSIDE_FILES` to folder `out`: class
    visualisations (with the network's probability of each class), the `test` patches that
    excite `channels` of top-level layer `patch_layer` most (None: the deepest whose units
    see at most half the image; channels past the layer's last are left out), and for the
    first `shown`
    test images their gradient, SmoothGrad, Grad-CAM and occlusion maps. Figures: each class
    visualisation's probability, the Grad-CAM and patch layers, and the deletion test (the
    `deletion_images` first test images' mean true class probability before and after
    deleting the 10 % of pixels SmoothGrad, the gradient or chance ranks highest)."""
    key = jax.random.key(seed)
    normalized = preprocess.inputs(jnp.asarray(test.images))
    labels = jnp.asarray(test.labels)
    low, high = features.pixel_range(preprocess.mean, preprocess.std)
    classes = jnp.arange(test.num_classes)
    made, probabilities = features.class_visualisations(
        state, classes, tuple(test.image_shape), low, high, jax.random.fold_in(key, 1)
    )
    own = np.asarray(probabilities)[np.arange(test.num_classes), np.asarray(classes)]
    paths = [
        inside.plot_class_visualisations(
            features.to_pixels(made, preprocess.mean, preprocess.std),
            test.class_names,
            own,
            os.path.join(out, "class_visualisations.png"),
        )
    ]
    figures: dict[str, Any] = {"class_visualisation_probability": own.tolist()}
    shapes = dict(features.feature_layers(state, normalized[:1]))
    spatial = any(h * w > 1 for h, w, _ in shapes.values())
    if spatial:
        if patch_layer is None:
            layer, field = top_patch_layer(state, normalized[:1], list(shapes))
        else:
            layer = patch_layer
            field = features.receptive_field(state, normalized[:1], layer)
        chosen = [c for c in channels if c < shapes[layer][-1]] or [0]
        found = features.top_activations(state, normalized, layer, chosen, field=field)
        paths.append(
            inside.plot_top_patches(
                test.images, found, field, layer, os.path.join(out, "top_patches.png")
            )
        )
        figures["top_patch_layer"] = layer
        figures["top_patch_field"] = field.size
    # The gradient and SmoothGrad maps of the first max(shown, deletion_images) images, computed
    # once: the first `shown` are drawn, the first `deletion_images` judged by deletion below.
    few, few_labels = normalized[:shown], labels[:shown]
    judged, judged_labels = normalized[:deletion_images], labels[:deletion_images]
    both = max(shown, deletion_images)
    ranked = {
        "SmoothGrad": np.asarray(
            attribution.smoothgrad(
                state, normalized[:both], labels[:both], jax.random.fold_in(key, 2)
            )
        ),
        "gradient": np.asarray(
            attribution.gradient_saliency(state, normalized[:both], labels[:both])
        ),
    }
    maps = {"gradient": ranked["gradient"][:shown], "SmoothGrad": ranked["SmoothGrad"][:shown]}
    overlay = []
    if spatial:
        cam_layer = features.last_feature_layer(state, normalized[:1])
        maps[f"Grad-CAM\n{cam_layer}"] = np.asarray(
            attribution.grad_cam(state, few, few_labels, cam_layer)
        )
        overlay.append(f"Grad-CAM\n{cam_layer}")
        figures["grad_cam_layer"] = cam_layer
    patch = max(2, test.image_shape[0] // 4)
    maps["occlusion"] = attribution.occlusion(state, few, few_labels, patch=patch)
    titles = [test.class_names[label] for label in test.labels[:shown]]
    paths.append(
        inside.plot_attributions(
            test.images[:shown], maps, titles, os.path.join(out, "attribution.png"), overlay
        )
    )
    figures["deletion"] = {
        name: attribution.deletion_test(
            state, judged, judged_labels, values[:deletion_images], seed=seed
        )
        for name, values in ranked.items()
    }
    figures["deletion_images"] = int(len(judged))
    return Inside(paths, figures, made)

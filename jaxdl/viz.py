"""Plots a person would rather look at than read: training curves, the learning rate, the
confusion matrix, predictions, first-layer filters, feature maps and saliency maps.

Every function writes one PNG (matplotlib, Agg backend: no display needed) and returns its path.
`save_run_plots` makes them all for a finished run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from jaxdl.nn.conv import Conv  # noqa: E402
from jaxdl.state import TrainState  # noqa: E402
from jaxdl.step import predict  # noqa: E402

_DPI = 110


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(histories: dict[str, list[dict[str, Any]]], path: str) -> str:
    """Loss and accuracy per epoch, train (solid) and validation (dashed), for one or several
    runs (the dict maps a run's label to its metrics records); one colour per run."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    colors = plt.get_cmap("tab10").colors
    for index, (label, history) in enumerate(histories.items()):
        color = colors[index % len(colors)]
        epochs = [r["epoch"] for r in history]
        for split, style in (("train", "-"), ("val", "--")):
            if f"{split}_loss" not in history[0]:
                continue
            name = f"{label} {split}" if len(histories) == 1 else label
            show = len(histories) == 1 or split == "train"  # several runs: one entry per run
            for ax, key, scale in ((loss_ax, "loss", 1), (acc_ax, "accuracy", 100)):
                ax.plot(
                    epochs,
                    [scale * r[f"{split}_{key}"] for r in history],
                    style,
                    color=color if len(histories) > 1 else None,
                    label=name if show else None,
                )
    several = len(histories) > 1
    suffix = " (solid: train, dashed: validation)" if several else ""
    loss_ax.set(title=f"Loss{suffix}", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title=f"Accuracy{suffix}", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    if several:
        acc_ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), title="run")
    else:
        loss_ax.legend()
        acc_ax.legend()
    return _save(fig, path)


def plot_learning_rate(
    learning_rate_fn: Callable[[int], float], total_steps: int, path: str
) -> str:
    """The learning rate at every step of training."""
    steps = np.arange(total_steps)
    rates = np.asarray(jax.vmap(learning_rate_fn)(jnp.asarray(steps)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, rates)
    ax.set(title="Learning rate schedule", xlabel="step", ylabel="learning rate")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str) -> str:
    """Rows are true classes, columns predictions; each cell shows its count."""
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    threshold = matrix.max() / 2
    for t in range(k):
        for p in range(k):
            ax.text(
                p,
                t,
                str(matrix[t, p]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[t, p] > threshold else "black",
            )
    accuracy = 100 * np.trace(matrix) / max(1, matrix.sum())
    ax.set(
        title=f"Test confusion matrix ({accuracy:.2f} % correct)", xlabel="predicted", ylabel="true"
    )
    return _save(fig, path)


def _show(ax, image: np.ndarray) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray")
    else:
        ax.imshow(image)
    ax.axis("off")


def plot_predictions(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
    path: str,
    columns: int = 8,
) -> str:
    """A grid of uint8 images titled "predicted (true)"; mistakes in red."""
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, label, pred in zip(axes.ravel(), images, labels, predictions, strict=False):
        _show(ax, image)
        wrong = label != pred
        title = f"{class_names[pred]}\n(true: {class_names[label]})" if wrong else class_names[pred]
        ax.set_title(title, fontsize=8, color="red" if wrong else "black")
    mistakes = int(np.sum(labels != predictions))
    fig.suptitle(f"Test predictions: {mistakes} of {len(labels)} wrong (red)")
    return _save(fig, path)


def plot_segmentation(
    images: np.ndarray,
    masks: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str],
    path: str,
) -> str:
    """One row per example: the uint8 image, the true mask and the predicted mask (i32[H, W]
    class maps, one colour per class, background black), with a shared colour legend."""
    cmap = plt.get_cmap("tab20", len(class_names)).copy()
    colors = cmap(np.arange(len(class_names)))
    colors[0] = (0, 0, 0, 1)
    cmap = ListedColormap(colors)
    fig, axes = plt.subplots(len(images), 3, figsize=(6.6, 2.2 * len(images)), squeeze=False)
    for row, (image, mask, guess) in enumerate(zip(images, masks, predicted, strict=True)):
        _show(axes[row, 0], image)
        for ax, classes in ((axes[row, 1], mask), (axes[row, 2], guess)):
            ax.imshow(classes, cmap=cmap, vmin=-0.5, vmax=len(class_names) - 0.5)
            ax.axis("off")
        pixel_accuracy = 100 * np.mean(mask == guess)
        axes[row, 2].set_title(f"{pixel_accuracy:.1f} % of pixels right", fontsize=8)
    for ax, title in zip(axes[0], ("image", "true mask", "predicted mask"), strict=True):
        ax.set_title(title if ax is not axes[0, 2] else f"{title}\n{ax.get_title()}", fontsize=9)
    handles = [Patch(color=colors[k], label=name) for k, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="center right", fontsize=8, title="class")
    fig.subplots_adjust(right=0.8)
    return _save(fig, path)


def _in_call_order(tree, path=()):
    """(path, leaf) pairs of nested dicts in insertion order, which for the intermediates of an
    eager (not jitted) `apply` is the order the modules ran in. (`jax.tree_util` sorts keys,
    and so do the parameter dicts that come out of `jax.jit`.)"""
    if hasattr(tree, "items"):
        for key, value in tree.items():
            yield from _in_call_order(value, (*path, key))
    elif isinstance(tree, (tuple, list)):
        for index, value in enumerate(tree):
            yield from _in_call_order(value, (*path, str(index)))
    else:
        yield path, tree


def conv_outputs(state: TrainState, image: jax.Array) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """Every `jaxdl.nn.Conv` output for one image f32[H, W, C], in the order the layers ran, as
    (module path, f32[h, w, c]); the path indexes `state.params`."""
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    _, captured = state.apply_fn(
        variables,
        image[None],
        train=False,
        capture_intermediates=lambda module, _: isinstance(module, Conv),
        mutable=["intermediates"],
    )
    # each path ends in (..., "__call__", "0"): the module path is what precedes them
    return [
        (path[:-2], np.asarray(value[0]))
        for path, value in _in_call_order(captured.get("intermediates", {}))
    ]


def first_conv_kernel(params, outputs) -> np.ndarray | None:
    """The kernel [kh, kw, C, F] of the first convolution in `outputs` (from `conv_outputs`),
    or None when the model has no convolution."""
    if not outputs:
        return None
    node = params
    for key in outputs[0][0]:
        node = node[key]
    return np.asarray(node["conv"]["kernel"])  # jaxdl.nn.Conv keeps its kernel in "conv"


def plot_filters(kernel: np.ndarray, path: str, max_filters: int = 64) -> str:
    """First-layer filters [kh, kw, C, F] as a grid, each scaled to its own range; colour for
    RGB input, grey (the channel mean) otherwise."""
    kh, kw, c, f = kernel.shape
    count = min(f, max_filters)
    columns = int(np.ceil(np.sqrt(count)))
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.1 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in zip(range(count), axes.ravel(), strict=False):
        w = kernel[..., i]
        w = w if c == 3 else w.mean(axis=-1, keepdims=True)
        w = (w - w.min()) / (w.max() - w.min() + 1e-12)
        _show(ax, w)
    fig.suptitle(f"First convolution: {count} of {f} filters, {kh}x{kw}x{c}")
    return _save(fig, path)


def conv_stage_outputs(outputs, max_stages: int = 4):
    """Feature maps after each convolution stage, from `conv_outputs`: the output of the last
    convolution at each spatial resolution, in order, as (name, f32[h, w, c])."""
    stages: list[tuple[str, np.ndarray]] = []
    for path, fmap in outputs:
        name = "/".join(path)
        if stages and stages[-1][1].shape[:2] == fmap.shape[:2]:
            stages[-1] = (name, fmap)
        else:
            stages.append((name, fmap))
    return stages[:max_stages]


def plot_feature_maps(image: np.ndarray, stages, path: str, channels: int = 8) -> str:
    """The input image and, per stage, its first `channels` feature maps."""
    fig, axes = plt.subplots(
        len(stages), channels + 1, figsize=(1.4 * (channels + 1), 1.5 * len(stages)), squeeze=False
    )
    for row, (name, fmap) in enumerate(stages):
        _show(axes[row, 0], image) if row == 0 else axes[row, 0].axis("off")
        axes[row, 1].set_title(
            f"{fmap.shape[0]}x{fmap.shape[1]}x{fmap.shape[2]}", fontsize=7, loc="left"
        )
        for col in range(channels):
            ax = axes[row, col + 1]
            ax.axis("off")
            if col < fmap.shape[-1]:
                ax.imshow(fmap[..., col], cmap="viridis")
        axes[row, 0].text(
            -0.1,
            0.5,
            name.split("/")[0],
            transform=axes[row, 0].transAxes,
            ha="right",
            va="center",
            fontsize=7,
        )
    fig.suptitle("Feature maps after each convolution stage (first channels)")
    return _save(fig, path)


def saliency_maps(state: TrainState, images: jax.Array, labels: jax.Array) -> np.ndarray:
    """|d score(true class) / d input|, max over channels: f32[B, H, W] (Simonyan et al. 2014)."""

    def score(x):
        logits = predict(state, x)
        return jnp.sum(jnp.take_along_axis(logits, labels[:, None], axis=1))

    grads = jax.jit(jax.grad(score))(images)
    return np.asarray(jnp.max(jnp.abs(grads), axis=-1))


def plot_saliency(images: np.ndarray, maps: np.ndarray, titles: Sequence[str], path: str) -> str:
    """Each uint8 image above its saliency map."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 3.8), squeeze=False)
    for i in range(n):
        _show(axes[0, i], images[i])
        axes[0, i].set_title(titles[i], fontsize=8)
        axes[1, i].imshow(maps[i], cmap="hot")
        axes[1, i].axis("off")
    fig.suptitle("Saliency: gradient of the true class score with respect to the input")
    return _save(fig, path)

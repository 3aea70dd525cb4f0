"""Pictures of data and of what a network learned: confusion matrix, predictions, segmentation
masks, first-layer filters, feature maps and saliency maps. The computations behind the last
three (`jaxdl.tools.introspect`) are apart from the drawing here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from jaxdl.plots import plt, save_figure


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
    return save_figure(fig, path)


def show_image(ax, image: np.ndarray) -> None:
    """Draws a uint8 or float image [H, W, C] on `ax` (grey for one channel), no axes."""
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
        show_image(ax, image)
        wrong = label != pred
        title = f"{class_names[pred]}\n(true: {class_names[label]})" if wrong else class_names[pred]
        ax.set_title(title, fontsize=8, color="red" if wrong else "black")
    mistakes = int(np.sum(labels != predictions))
    fig.suptitle(f"Test predictions: {mistakes} of {len(labels)} wrong (red)")
    return save_figure(fig, path)


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
        show_image(axes[row, 0], image)
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
    return save_figure(fig, path)


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
        show_image(ax, w)
    fig.suptitle(f"First convolution: {count} of {f} filters, {kh}x{kw}x{c}")
    return save_figure(fig, path)


def plot_feature_maps(image: np.ndarray, stages, path: str, channels: int = 8) -> str:
    """The input image and, per stage, its first `channels` feature maps."""
    fig, axes = plt.subplots(
        len(stages), channels + 1, figsize=(1.4 * (channels + 1), 1.5 * len(stages)), squeeze=False
    )
    for row, (name, fmap) in enumerate(stages):
        show_image(axes[row, 0], image) if row == 0 else axes[row, 0].axis("off")
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
    return save_figure(fig, path)


def kernel_text(kernel: np.ndarray) -> str:
    """A 3x3 kernel's weights as three lines of text; a larger one by its size."""
    if kernel.shape[0] != 3:
        return f"{kernel.shape[0]}x{kernel.shape[1]}"
    return "\n".join(" ".join(f"{w:g}" for w in row) for row in kernel)


def plot_kernels(image: np.ndarray, responses: dict[str, np.ndarray], kernels, path: str) -> str:
    """The grey `image` f[H, W] and its response to each named kernel, with the kernel's
    weights printed under its panel's title."""
    count = len(responses) + 1
    columns = 3
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title("input (grey)", fontsize=9)
    for ax, (name, response) in zip(axes.ravel()[1:], responses.items(), strict=False):
        kernel = kernels[name]
        signed = kernel.min() < 0 and name != "sharpen"  # edge detectors: show the sign
        if signed:
            limit = np.percentile(np.abs(response), 99)
            ax.imshow(response, cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:
            ax.imshow(np.clip(response, 0, 255), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{name}\n{kernel_text(kernel)}", fontsize=8)
    fig.suptitle("Classic convolution kernels on a photograph")
    return save_figure(fig, path)

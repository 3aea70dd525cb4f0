"""Plots of models that reconstruct and generate images: originals over reconstructions, a 2-D
view of codes, anomaly-score histograms, and image grids (samples, interpolations)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxdl.plots import plt, save_figure
from jaxdl.plots.images import show_image


def plot_image_grid(images: np.ndarray, path: str, columns: int, title: str = "") -> str:
    """Images f[N, H, W, C] in [0, 1] (or uint8) as a grid `columns` wide, row by row."""
    images = np.asarray(images)
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(0.9 * columns, 0.9 * rows + (0.4 if title else 0)), squeeze=False
    )
    for index, ax in enumerate(axes.flat):
        if index < len(images):
            show_image(
                ax, np.clip(images[index], 0, 1) if images.dtype != np.uint8 else images[index]
            )
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return save_figure(fig, path)


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, path: str) -> str:
    """Test images f[N, H, W, C] in [0, 1] (top row) over their reconstructions (bottom)."""
    count = len(originals)
    fig, axes = plt.subplots(2, count, figsize=(0.9 * count, 2.2), squeeze=False)
    for index in range(count):
        show_image(axes[0, index], np.clip(originals[index], 0, 1))
        show_image(axes[1, index], np.clip(reconstructions[index], 0, 1))
    axes[0, 0].set_title("test images", loc="left", fontsize=9)
    axes[1, 0].set_title("reconstructions", loc="left", fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.25)
    return save_figure(fig, path)


def plot_codes_2d(
    points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: str, title: str
) -> str:
    """Codes projected to two dimensions f[N, 2], one colour per label."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    colors = plt.get_cmap("tab10").colors
    for label in np.unique(labels):
        chosen = labels == label
        ax.scatter(
            points[chosen, 0],
            points[chosen, 1],
            s=4,
            alpha=0.7,
            color=colors[int(label) % len(colors)],
            label=class_names[int(label)],
        )
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(markerscale=4, loc="center left", bbox_to_anchor=(1.02, 0.5), title="label")
    return save_figure(fig, path)


def plot_score_histograms(
    panels: dict[str, dict[str, np.ndarray]], path: str, xlabel: str = "reconstruction error"
) -> str:
    """One panel per comparison (its title: the dict key), each with the histograms of its
    groups' scores (normal vs anomalous) on a shared logarithmic axis."""
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 3.8), constrained_layout=True, squeeze=False
    )
    for ax, (title, groups) in zip(axes[0], panels.items(), strict=True):
        values = np.concatenate([np.ravel(v) for v in groups.values()])
        positive = values[values > 0]
        low, high = (positive.min(), positive.max()) if len(positive) else (1e-6, 1.0)
        bins = np.geomspace(low, high, 60)
        for name, scores in groups.items():
            ax.hist(
                np.maximum(np.ravel(scores), low), bins=bins, alpha=0.55, density=True, label=name
            )
        ax.set(title=title, xlabel=xlabel, ylabel="density", xscale="log")
        ax.legend()
    return save_figure(fig, path)


def plot_class_histogram(fractions: np.ndarray, class_names: Sequence[str], path: str) -> str:
    """The fraction of generated images a judge puts in each class, with the even share."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5), constrained_layout=True)
    ax.bar(np.arange(len(fractions)), 100 * np.asarray(fractions), color="tab:blue")
    ax.axhline(100 / len(fractions), color="black", linestyle="--", linewidth=1, label="even share")
    ax.set(
        title="Judge's classes of the generated images",
        xticks=np.arange(len(fractions)),
        xticklabels=list(class_names),
        ylabel="generated images (%)",
    )
    ax.legend()
    return save_figure(fig, path)

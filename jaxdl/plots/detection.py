"""Pictures of a detector's work: held-out canvases with the true boxes beside the predicted
ones (class and score on each), and the precision-recall curves behind the AP figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.patches import Rectangle

from jaxdl.plots import plt, save_figure
from jaxdl.plots.images import show_image


def draw_boxes(ax, boxes, classes, class_names, color, scores=None) -> None:
    """Boxes f[n, 4] (y0, x0, y1, x1) on `ax`, each labelled with its class (and score)."""
    for index, ((y0, x0, y1, x1), cls) in enumerate(zip(boxes, classes, strict=True)):
        ax.add_patch(
            Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=color, lw=1.2)
        )
        text = class_names[int(cls)]
        if scores is not None:
            text += f" {scores[index]:.2f}"
        ax.text(x0, y0 - 1, text, color=color, fontsize=6, va="bottom", clip_on=True)


def plot_detections(
    images: np.ndarray,
    truths: Sequence[tuple[np.ndarray, np.ndarray]],
    detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    path: str,
    columns: int = 3,
    min_score: float = 0.3,
) -> str:
    """Canvases uint8[N, H, W, C], each as a pair of panels: its true boxes (class), and the
    detections scoring at least `min_score` (class and score), one (boxes, classes[,
    scores]) entry per canvas."""
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2.3 * 2 * columns, 2.4 * rows))
    axes = np.asarray(axes).reshape(rows, 2 * columns)
    for ax in axes.ravel():
        ax.axis("off")
    for index, image in enumerate(images):
        true_ax, found_ax = axes[
            index // columns, 2 * (index % columns) : 2 * (index % columns) + 2
        ]
        for ax in (true_ax, found_ax):
            show_image(ax, image)
        draw_boxes(true_ax, *truths[index], class_names, "lime")
        boxes, classes, scores = detections[index]
        shown = np.asarray(scores) >= min_score
        draw_boxes(found_ax, boxes[shown], classes[shown], class_names, "orangered", scores[shown])
        true_ax.set_title(f"true ({len(truths[index][0])})", fontsize=8)
        found_ax.set_title(f"detected, score >= {min_score} ({shown.sum()})", fontsize=8)
    return save_figure(fig, path)


def plot_precision_recall(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], ap: dict[str, float], path: str
) -> str:
    """One precision-recall curve per class (name -> (precision, recall)), its AP in the
    legend."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (precision, recall) in curves.items():
        ax.plot(recall, precision, label=f"{name}: AP {100 * ap[name]:.1f} %")
    ax.set(
        title="Precision-recall at IoU 0.5 (held-out canvases)",
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1.01),
        ylim=(0, 1.01),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    return save_figure(fig, path)

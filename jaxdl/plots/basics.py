"""Plots for the first topics of the course: loss versus iteration (learning-rate sweeps,
normalised or raw features) and a classifier's decision boundary in the plane."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jaxdl.plots import plt, save_figure


def plot_loss_versus_iteration(
    curves: dict[str, np.ndarray],
    path: str,
    title: str,
    ylabel: str = "training loss",
    log_x: bool = False,
) -> str:
    """One line per run on a log loss axis (`log_x`: log iterations too, counted from 1); a
    diverging run is drawn until its loss passes 1e6 times the smallest starting loss (or
    becomes inf / nan) and marked there with an x."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ceiling = 1e6 * min(float(c[0]) for c in curves.values())
    for label, losses in curves.items():
        losses = np.asarray(losses, np.float64)
        bad = ~np.isfinite(losses) | (losses > ceiling)
        end = int(np.argmax(bad)) if bad.any() else len(losses)
        iterations = np.arange(len(losses)) + (1 if log_x else 0)
        (line,) = ax.plot(iterations[:end], losses[:end], label=label)
        if end < len(losses):
            ax.plot(iterations[end - 1], losses[end - 1], "x", color=line.get_color(), markersize=9)
    ax.set_yscale("log")
    if log_x:
        ax.set_xscale("log")
    ax.set(title=title, xlabel="iteration", ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, path)


def plot_decision_boundaries(
    panels: Sequence[tuple[str, Callable[[np.ndarray], np.ndarray]]],
    points: np.ndarray,
    labels: np.ndarray,
    path: str,
    axis_names: tuple[str, str] = ("x1", "x2"),
    class_names: tuple[str, str] = ("class 0", "class 1"),
) -> str:
    """Side by side, for each `(title, probability)` panel: the data points f32[N, 2] coloured
    by their 0/1 label, the predicted probability of class 1 as a background shade and the 0.5
    contour (the decision boundary). `probability` maps f32[M, 2] grid points to f32[M]."""
    pad = 0.1 * (points.max(axis=0) - points.min(axis=0))
    low, high = points.min(axis=0) - pad, points.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False, constrained_layout=True
    )
    for ax, (title, probability) in zip(axes[0], panels, strict=True):
        p = np.asarray(probability(grid)).reshape(gx.shape)
        shade = ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 11), cmap="RdBu", alpha=0.35)
        ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1.5)
        for value, color in ((0, "tab:red"), (1, "tab:blue")):
            chosen = labels == value
            ax.scatter(*points[chosen].T, s=9, c=color, label=class_names[value], edgecolors="none")
        ax.set(title=title, xlabel=axis_names[0], ylabel=axis_names[1])
        ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(shade, ax=axes[0].tolist(), label="P(class 1)", shrink=0.85)
    return save_figure(fig, path)

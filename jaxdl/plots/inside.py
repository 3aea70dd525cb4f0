"""Pictures of what a trained network looks at and for: class visualisations, the test patches
that excite a channel most, and attribution maps (gradient, SmoothGrad, Grad-CAM, occlusion)
under their images. The computations are `jaxdl.tools.features` and `jaxdl.tools.attribution`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxdl.plots import plt, save_figure
from jaxdl.plots.images import show_image
from jaxdl.tools.features import ReceptiveField


def plot_class_visualisations(
    images: np.ndarray,
    class_names: Sequence[str],
    probabilities: np.ndarray,
    path: str,
    second: np.ndarray | None = None,
) -> str:
    """Images uint8[K, H, W, C] made to excite class k, each titled with its class and the
    network's probability of it (f32[K]); `second` f32[K]: another network's, for comparison."""
    count = len(images)
    fig, axes = plt.subplots(1, count, figsize=(1.6 * count, 2.6), squeeze=False)
    for k in range(count):
        show_image(axes[0, k], images[k])
        title = f"{class_names[k]}\np = {probabilities[k]:.3f}"
        if second is not None:
            title += f"\nother net {second[k]:.2f}"
        axes[0, k].set_title(title, fontsize=8)
    fig.suptitle(
        "Class visualisations: inputs made by gradient ascent on each class's log-probability",
        y=1.04,
    )
    return save_figure(fig, path)


def crop(image: np.ndarray, y: int, x: int, field: ReceptiveField) -> np.ndarray:
    """The part of `image` [H, W, C] that unit (y, x) of a layer with receptive `field` sees,
    f[size, size, C]; where the field reaches past the image, grey."""
    size = field.size
    top, left = field.stride * y + field.offset, field.stride * x + field.offset
    out = np.full((size, size, image.shape[-1]), 128, image.dtype)
    rows = slice(max(top, 0), min(top + size, image.shape[0]))
    cols = slice(max(left, 0), min(left + size, image.shape[1]))
    inner = (slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left))
    out[inner] = image[rows, cols]
    return out


def plot_top_patches(
    images: np.ndarray,
    found: dict[int, list[tuple[int, int, int, float]]],
    field: ReceptiveField,
    layer: str,
    path: str,
) -> str:
    """One row per channel: the patches (of uint8 `images` [N, H, W, C]) in which it responds
    most, best first, as `jaxdl.tools.features.top_activations` found them."""
    rows = len(found)
    columns = max(len(places) for places in found.values())
    fig, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.2 * rows), squeeze=False)
    for row, (channel, places) in enumerate(found.items()):
        for column in range(columns):
            ax = axes[row, column]
            ax.axis("off")
            if column < len(places):
                index, y, x, value = places[column]
                show_image(ax, crop(images[index], y, x, field))
                ax.set_title(f"{value:.1f}", fontsize=6)
        axes[row, 0].text(
            -0.15, 0.5, f"ch {channel}", transform=axes[row, 0].transAxes, ha="right", va="center"
        )
    fig.suptitle(
        f"Test patches ({field.size}x{field.size} px) that excite {layer}'s channels most",
        fontsize=9,
    )
    return save_figure(fig, path)


def plot_attributions(
    images: np.ndarray,
    maps: dict[str, np.ndarray],
    titles: Sequence[str],
    path: str,
    overlay: Sequence[str] = (),
) -> str:
    """Each uint8 image [H, W, C] above its maps, one row per named map f32[N, H, W]; the maps
    named in `overlay` are drawn over a grey copy of the image."""
    count = len(images)
    rows = 1 + len(maps)
    fig, axes = plt.subplots(rows, count, figsize=(1.6 * count, 1.7 * rows), squeeze=False)
    grey = images.astype(np.float32).mean(-1)
    for i in range(count):
        show_image(axes[0, i], images[i])
        axes[0, i].set_title(titles[i], fontsize=8)
        for row, (name, values) in enumerate(maps.items(), start=1):
            ax = axes[row, i]
            ax.axis("off")
            if name in overlay:
                ax.imshow(grey[i], cmap="gray")
                ax.imshow(values[i], cmap="jet", alpha=0.5)
            else:
                ax.imshow(values[i], cmap="hot")
        for row, name in enumerate(maps, start=1):
            axes[row, 0].text(
                -0.1,
                0.5,
                name,
                transform=axes[row, 0].transAxes,
                ha="right",
                va="center",
                fontsize=8,
            )
    fig.suptitle("Where the true class's score comes from", fontsize=10)
    return save_figure(fig, path)

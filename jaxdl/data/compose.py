"""Segmentation data made from real digits: MNIST digits pasted on a larger canvas, with a
per-pixel class mask taken from the digits' own pixels.

Mask classes: 0 = background, 1 + d = a pixel of digit d. Where digits overlap, the brighter
pixel wins the image and its digit wins the mask. Canvases drawn from MNIST's test split never
share a digit image with those from its training split, so the held-out score is honest.
"""

from __future__ import annotations

import numpy as np

from jaxdl.errors import ConfigError

BACKGROUND = 0


def compose_digits(
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    canvas: int = 48,
    digits_per_canvas: int = 2,
    threshold: int = 96,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` canvases from digit images uint8[N, h, w, 1] and labels i32[N]: returns images
    uint8[count, canvas, canvas, 1] and masks i32[count, canvas, canvas] (a pixel belongs to a
    digit where the digit's value is above `threshold`). Each canvas holds `digits_per_canvas`
    digits drawn at random (with the seed) at random positions."""
    n, h, w = images.shape[:3]
    if canvas < max(h, w):
        raise ConfigError(
            f"canvas {canvas} is smaller than the {h}x{w} digits; use at least {max(h, w)}."
        )
    rng = np.random.default_rng(seed)
    out = np.zeros((count, canvas, canvas, 1), np.uint8)
    masks = np.full((count, canvas, canvas), BACKGROUND, np.int32)
    for index in range(count):
        for choice in rng.integers(0, n, digits_per_canvas):
            top, left = rng.integers(0, canvas - h + 1), rng.integers(0, canvas - w + 1)
            digit = images[choice, :, :, 0]
            window = out[index, top : top + h, left : left + w, 0]
            brighter = digit > window
            window[brighter] = digit[brighter]
            region = masks[index, top : top + h, left : left + w]
            region[brighter & (digit > threshold)] = 1 + labels[choice]
    return out, masks

"""Segmentation data made from real digits: MNIST digits pasted on a larger canvas, with a
per-pixel class mask taken from the digits' own pixels.

Mask classes: 0 = background, 1 + d = a pixel of digit d. Where digits overlap, the brighter
pixel wins the image and its digit wins the mask. Canvases drawn from MNIST's test split never
share a digit image with those from its training split, so the held-out score is honest.
"""

from __future__ import annotations

import numpy as np

from jaxdl.data.boxes import iou_matrix, pack
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


def tight_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) pixel edges of the non-zero pixels of uint8[h, w]."""
    rows, cols = np.nonzero(pixels.any(1))[0], np.nonzero(pixels.any(0))[0]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def scaled_digit(digit: np.ndarray, size: int) -> np.ndarray:
    """uint8[h, w] digit cropped to its non-zero pixels and resized (bilinear, aspect kept) so
    its longer side is `size` pixels; cropped again to what is non-zero after resizing."""
    from PIL import Image

    y0, x0, y1, x1 = tight_box(digit)
    crop = digit[y0:y1, x0:x1]
    scale = size / max(crop.shape)
    shape = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    resized = np.asarray(Image.fromarray(crop).resize(shape, Image.BILINEAR))
    y0, x0, y1, x1 = tight_box(resized)
    return resized[y0:y1, x0:x1]


def compose_detection(
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    canvas: int = 96,
    digits: tuple[int, int] = (1, 4),
    sizes: tuple[int, int] = (20, 44),
    max_iou: float = 0.3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` detection canvases from digit images uint8[N, h, w, 1] and labels i32[N]: images
    uint8[count, canvas, canvas, 1] and box labels f32[count, digits[1], 6]
    (`jaxdl.data.boxes`).

    Each canvas holds a number of digits drawn uniformly from `digits` (inclusive), each a
    random digit image resized so its longer side is drawn uniformly from `sizes` (inclusive),
    its box tight around its non-zero pixels, placed at random where its box overlaps no
    earlier box with IoU above `max_iou` (a digit that finds no such place in 100 draws is
    left out). Overlapping pixels keep the brighter value. The same arguments give the same
    canvases."""
    low, high = digits
    if not 1 <= low <= high:
        raise ConfigError(f"digits per canvas must be 1 <= low <= high, got {digits}.")
    if not 1 <= sizes[0] <= sizes[1] <= canvas:
        raise ConfigError(
            f"digit sizes {sizes} must satisfy 1 <= low <= high <= canvas {canvas}; use "
            f"sizes that fit the canvas."
        )
    rng = np.random.default_rng(seed)
    out = np.zeros((count, canvas, canvas, 1), np.uint8)
    all_boxes, all_classes = [], []
    for index in range(count):
        boxes, classes = [], []
        for _ in range(rng.integers(low, high + 1)):
            choice = rng.integers(0, len(images))
            digit = scaled_digit(images[choice, :, :, 0], int(rng.integers(sizes[0], sizes[1] + 1)))
            h, w = digit.shape
            for _attempt in range(100):
                top, left = rng.integers(0, canvas - h + 1), rng.integers(0, canvas - w + 1)
                box = np.array([top, left, top + h, left + w], np.float32)
                if not boxes or iou_matrix(box, np.stack(boxes)).max() <= max_iou:
                    break
            else:
                continue
            window = out[index, top : top + h, left : left + w, 0]
            np.maximum(window, digit, out=window)
            boxes.append(box)
            classes.append(int(labels[choice]))
        all_boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
        all_classes.append(np.asarray(classes, np.int32))
    return out, pack(all_boxes, all_classes, high)

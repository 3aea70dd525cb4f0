"""Boxes as a dataset's labels: every example's objects in one padded array with a validity
mask, so that boxes travel through the device-resident pipeline (gather, augmentation) like
any other label.

    labels f32[N, M, 6]: per object (y0, x0, y1, x1, class, valid)

Coordinates are pixel edges, so a box covering rows r0..r1-1 has y0 = r0, y1 = r1 (its height
is y1 - y0); `class` is the object's class id as a float; `valid` is 1 for an object and 0 for
padding (whose other entries are 0). M is the most objects any example holds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError

FIELDS = 6
BOX, CLASS, VALID = slice(0, 4), 4, 5


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """f64[n, m]: intersection over union of every box of f[n, 4] with every box of f[m, 4]
    (y0, x0, y1, x1); 0 where both are empty."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), -1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def pack(boxes: list[np.ndarray], classes: list[np.ndarray], max_objects: int) -> np.ndarray:
    """f32[N, max_objects, 6] from each example's boxes f32[m, 4] (y0, x0, y1, x1) and class
    ids i[m]; padding rows are all 0."""
    labels = np.zeros((len(boxes), max_objects, FIELDS), np.float32)
    for index, (box, cls) in enumerate(zip(boxes, classes, strict=True)):
        count = len(box)
        if count > max_objects:
            raise ConfigError(
                f"example {index} has {count} objects but the labels hold at most "
                f"{max_objects}; raise max_objects."
            )
        labels[index, :count, BOX] = box
        labels[index, :count, CLASS] = cls
        labels[index, :count, VALID] = 1.0
    return labels


def unpack(labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each example's (boxes f32[m, 4], classes i32[m]) from labels f32[N, M, 6]."""
    labels = np.asarray(labels)
    result = []
    for example in labels:
        real = example[:, VALID] > 0.5
        result.append((example[real, BOX], example[real, CLASS].astype(np.int32)))
    return result


def random_zoom_shift(
    key: jax.Array, images: jax.Array, labels: jax.Array, zoom: float
) -> tuple[jax.Array, jax.Array]:
    """Scales each image of f32[B, H, W, C] by a factor drawn from [1 - zoom, 1 + zoom] and
    shifts it by a random offset, moving its boxes (labels f32[B, M, 6]) with the pixels.

    The factor and the offset are drawn so that every box stays whole on the canvas: the
    factor is capped where the boxes' union would no longer fit, and the offset is uniform
    over the positions that keep the union inside. Pixels shifted in from outside are 0
    (apply before normalising: 0 is the background of a digit canvas)."""
    b, h, w = images.shape[:3]
    zoom_key, shift_key = jax.random.split(key)
    valid = labels[..., VALID] > 0.5
    boxes = labels[..., BOX]
    big, size = jnp.float32(1e9), jnp.array([h, w], jnp.float32)
    # the union of each example's boxes, (low y, low x) and (high y, high x); the whole canvas
    # for an example without objects
    low = jnp.where(valid[..., None], boxes[..., :2], big).min(1)
    high = jnp.where(valid[..., None], boxes[..., 2:], -big).max(1)
    any_box = valid.any(1)[:, None]
    low = jnp.where(any_box, low, 0.0)
    high = jnp.where(any_box, high, size)
    factor = jax.random.uniform(zoom_key, (b,), minval=1.0 - zoom, maxval=1.0 + zoom)
    factor = jnp.minimum(factor, (size / jnp.maximum(high - low, 1.0)).min(-1))
    lowest = -low * factor[:, None]  # offsets that put the union's low edge at 0 ...
    highest = size - high * factor[:, None]  # ... and its high edge at the far side
    offset = lowest + jax.random.uniform(shift_key, (b, 2)) * (highest - lowest)

    def warp(image, scale, translation):
        return jax.image.scale_and_translate(
            image,
            image.shape,
            (0, 1),
            jnp.stack([scale, scale]),
            translation,
            "linear",
            antialias=True,
        )

    images = jax.vmap(warp)(images, factor, offset)
    moved = boxes * factor[:, None, None] + jnp.tile(offset, 2)[:, None, :]
    moved = jnp.where(valid[..., None], moved, 0.0)
    return images, labels.at[..., BOX].set(moved)

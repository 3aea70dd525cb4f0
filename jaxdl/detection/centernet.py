"""CenterNet's training targets, loss and decoding, as pure jittable functions over the
detector's output grid (`jaxdl.models.detection`: f32[B, h, w, K + 4] at stride 4).

Targets, from box labels f32[B, M, 6] (`jaxdl.data.boxes`): an object whose box centre falls
in cell (i, j) puts a 1 at (i, j) in its class's heatmap, surrounded by a Gaussian of standard
deviations 0.54 / 6 of the box's height and width (TTFNet's elliptical form, Liu et al. 2020:
wide boxes get wide bumps); where bumps of one class meet the larger value wins. At (i, j) it
also asks for its height and width in cells and the centre's position within the cell.

Loss (per canvas, normalised by its number of objects, as CenterNet does per batch):
the penalty-reduced focal loss on the heatmaps (Law & Deng 2018: the Gaussian lowers the
penalty for near misses), plus 0.1 x L1 on the sizes and 1 x L1 on the offsets at the true
centres only.

Decoding: sigmoid heatmaps; a cell is a peak where it equals the maximum of its 3x3
neighbourhood (this replaces non-maximum suppression); the `max_detections` highest peaks
over all cells and classes become boxes centred at (cell + offset) x stride.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxdl.data.boxes import BOX, CLASS, VALID
from jaxdl.models.detection import STRIDE
from jaxdl.step import predict

SIGMA_FRACTION = 0.54 / 6  # Gaussian std per unit of box size (TTFNet's alpha / 6)
SIZE_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0
FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0


def centres(labels: jax.Array, stride: int = STRIDE) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per object of labels f32[B, M, 6]: its centre's cell i32[B, M, 2] (row, column), its
    offset in the cell f32[B, M, 2] in [0, 1) and its size (height, width) in cells
    f32[B, M, 2]."""
    boxes = labels[..., BOX] / stride
    centre = 0.5 * (boxes[..., :2] + boxes[..., 2:])
    cell = jnp.floor(centre)
    return cell.astype(jnp.int32), centre - cell, boxes[..., 2:] - boxes[..., :2]


def heatmap_targets(labels: jax.Array, shape: tuple[int, int], num_classes: int) -> jax.Array:
    """f32[B, h, w, K]: the Gaussian heatmaps of labels f32[B, M, 6] on an h x w grid."""
    cell, _, size = centres(labels)
    sigma = jnp.maximum(SIGMA_FRACTION * size, 1e-3)  # [B, M, 2]
    rows = jnp.arange(shape[0], dtype=jnp.float32)
    cols = jnp.arange(shape[1], dtype=jnp.float32)
    dy = (rows[None, None, :] - cell[..., 0:1]) / sigma[..., 0:1]  # [B, M, h]
    dx = (cols[None, None, :] - cell[..., 1:2]) / sigma[..., 1:2]  # [B, M, w]
    bumps = jnp.exp(-0.5 * (dy[..., :, None] ** 2 + dx[..., None, :] ** 2))  # [B, M, h, w]
    owner = jax.nn.one_hot(labels[..., CLASS].astype(jnp.int32), num_classes)  # [B, M, K]
    owner = owner * labels[..., VALID, None]
    return jnp.max(bumps[..., None] * owner[:, :, None, None, :], axis=1)


def at_cells(grid: jax.Array, cell: jax.Array) -> jax.Array:
    """Values of grid f32[B, h, w, C] at cells i32[B, M, 2]: f32[B, M, C] (cells outside the
    grid are clamped to its edge)."""
    h, w = grid.shape[1:3]
    row = jnp.clip(cell[..., 0], 0, h - 1)
    col = jnp.clip(cell[..., 1], 0, w - 1)
    flat = grid.reshape(grid.shape[0], h * w, grid.shape[-1])
    return jnp.take_along_axis(flat, (row * w + col)[..., None], axis=1)


def focal_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """f32[B]: the penalty-reduced focal loss summed over cells and classes of logits and
    Gaussian targets f32[B, h, w, K] (not yet normalised by the number of objects)."""
    positive = targets >= 1.0
    log_p = jax.nn.log_sigmoid(logits)
    log_not_p = jax.nn.log_sigmoid(-logits)
    p = jnp.exp(log_p)
    pos = (1 - p) ** FOCAL_ALPHA * log_p
    neg = (1 - targets) ** FOCAL_BETA * p**FOCAL_ALPHA * log_not_p
    return -jnp.sum(jnp.where(positive, pos, neg), axis=(1, 2, 3))


def objective(
    outputs: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The detector's loss as a step objective: outputs f32[B, h, w, K + 4] and box labels
    f32[B, M, 6] -> per-canvas losses f32[B] and their parts {"heatmap", "size", "offset"}
    f32[B]. `label_smoothing` has no meaning here and is ignored."""
    del label_smoothing
    num_classes = outputs.shape[-1] - 4
    outputs = outputs.astype(jnp.promote_types(outputs.dtype, jnp.float32))  # bf16 -> f32
    valid = labels[..., VALID]
    objects = jnp.maximum(valid.sum(-1), 1.0)
    targets = heatmap_targets(labels, outputs.shape[1:3], num_classes)
    heat = focal_loss(outputs[..., :num_classes], targets) / objects
    cell, offset, size = centres(labels)
    predicted = at_cells(outputs[..., num_classes:], cell)
    l1 = lambda pred, true: jnp.sum(jnp.abs(pred - true).sum(-1) * valid, -1) / objects
    size_loss = l1(predicted[..., :2], size)
    offset_loss = l1(predicted[..., 2:], offset)
    total = heat + SIZE_WEIGHT * size_loss + OFFSET_WEIGHT * offset_loss
    return total, {"heatmap": heat, "size": size_loss, "offset": offset_loss}


@functools.partial(jax.jit, static_argnames=("max_detections",))
def decode(outputs: jax.Array, max_detections: int = 100) -> dict[str, jax.Array]:
    """Detections from outputs f32[B, h, w, K + 4]: `{"boxes": f32[B, D, 4] (y0, x0, y1, x1)
    in input pixels, "classes": i32[B, D], "scores": f32[B, D]}`, D = `max_detections`, by
    descending score (the heatmap's peak value, in (0, 1))."""
    b, h, w, channels = outputs.shape
    num_classes = channels - 4
    heat = jax.nn.sigmoid(outputs[..., :num_classes].astype(jnp.float32))
    neighbourhood = lax.reduce_window(heat, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")
    peaks = jnp.where(heat == neighbourhood, heat, 0.0)
    scores, index = lax.top_k(peaks.reshape(b, -1), max_detections)
    cell_index, classes = jnp.divmod(index, num_classes)
    cell = jnp.stack(jnp.divmod(cell_index, w), -1)
    box = at_cells(outputs[..., num_classes:].astype(jnp.float32), cell)
    centre = (cell + box[..., 2:]) * STRIDE
    half = 0.5 * jnp.maximum(box[..., :2], 0.0) * STRIDE
    limit = jnp.array([h, w], jnp.float32) * STRIDE
    boxes = jnp.concatenate(
        [jnp.clip(centre - half, 0.0, limit), jnp.clip(centre + half, 0.0, limit)], -1
    )
    return {"boxes": boxes, "classes": classes.astype(jnp.int32), "scores": scores}


@functools.partial(jax.jit, static_argnames=("max_detections", "score_threshold"))
def detect(
    state, images: jax.Array, max_detections: int = 100, score_threshold: float = 0.05
) -> dict[str, jax.Array]:
    """Boxes, classes and scores (`decode`) that a trained detector `state` finds in
    normalised images f32[B, H, W, C], with `"valid": bool[B, D]` marking those scoring at
    least `score_threshold` (the rest are padding, so the shapes stay fixed under jit)."""
    found = decode(predict(state, images), max_detections)
    return found | {"valid": found["scores"] >= score_threshold}

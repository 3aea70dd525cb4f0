"""Pooling on NHWC input, with PyTorch's padding and ceil_mode semantics where models need them
(the zoo's shapes follow the reference implementations)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.nn.conv import use_fast_path


def _ceil_extra(size: int, window: int, stride: int, padding: int) -> int:
    """Extra right/bottom padding so the output size rounds up (PyTorch ceil_mode=True), with
    PyTorch's rule that the last window must start inside the padded input."""
    out_floor = (size + 2 * padding - window) // stride + 1
    out_ceil = math.ceil((size + 2 * padding - window) / stride) + 1
    if (out_ceil - 1) * stride >= size + padding:
        out_ceil -= 1
    return (out_ceil - out_floor) * stride if out_ceil > out_floor else 0


def max_pool(
    x: jax.Array, window: int, stride: int, padding: int = 0, ceil_mode: bool = False
) -> jax.Array:
    """Max pooling f32[B, H, W, C] -> f32[B, H', W', C] (padding counts as -inf).

    On the XLA:CPU path (`jaxdl.nn.conv.use_fast_path`) the maximum is taken over the window's
    shifted, strided slices: XLA:CPU's reduce-window is slow and its gradient (select-and-
    scatter) far slower, while slices and elementwise maxima fuse with their neighbours. The
    values are the same; where several inputs tie for a window's maximum, the gradient is shared
    among them instead of going to one.
    """
    extra_h = _ceil_extra(x.shape[1], window, stride, padding) if ceil_mode else 0
    extra_w = _ceil_extra(x.shape[2], window, stride, padding) if ceil_mode else 0
    pads = ((padding, padding + extra_h), (padding, padding + extra_w))
    if use_fast_path(x.dtype):
        return _max_pool_by_slices(x, window, stride, pads)
    return nn.max_pool(x, (window, window), (stride, stride), padding=pads)


def _max_pool_by_slices(x: jax.Array, window: int, stride: int, pads) -> jax.Array:
    if any(pads[0] + pads[1]):
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-jnp.inf)
    b, h, w, c = x.shape
    out_h, out_w = (h - window) // stride + 1, (w - window) // stride + 1
    if window == stride:  # non-overlapping windows: one reshape and one reduction
        x = x[:, : out_h * stride, : out_w * stride]
        return x.reshape(b, out_h, stride, out_w, stride, c).max(axis=(2, 4))
    result = None
    for dy in range(window):
        for dx in range(window):
            part = x[:, dy : dy + stride * (out_h - 1) + 1 : stride,
                     dx : dx + stride * (out_w - 1) + 1 : stride]  # fmt: skip
            result = part if result is None else jnp.maximum(result, part)
    return result


def avg_pool(x: jax.Array, window: int, stride: int | None = None) -> jax.Array:
    """Average pooling without padding: f32[B, H, W, C] -> f32[B, H', W', C]."""
    stride = stride or window
    return nn.avg_pool(x, (window, window), (stride, stride))


def global_avg_pool(x: jax.Array) -> jax.Array:
    """f32[B, H, W, C] -> f32[B, C]."""
    return jnp.mean(x, axis=(1, 2))


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
    """PyTorch's AdaptiveAvgPool2d: f32[B, H, W, C] -> f32[B, oh, ow, C]; cell i averages rows
    floor(i * H / oh) .. ceil((i + 1) * H / oh) - 1 (likewise columns)."""
    _, h, w, _ = x.shape
    oh, ow = output_size
    if (h, w) == (oh, ow):
        return x
    if h % oh == 0 and w % ow == 0:
        return nn.avg_pool(x, (h // oh, w // ow), (h // oh, w // ow))
    rows = []
    for i in range(oh):
        r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        cols = []
        for j in range(ow):
            c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            cols.append(jnp.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
        rows.append(jnp.stack(cols, axis=1))
    return jnp.stack(rows, axis=1)


class MaxPool(nn.Module):
    """`max_pool` as a layer, so that model summaries see it (shape, receptive field)."""

    window: int
    stride: int
    padding: int = 0
    ceil_mode: bool = False

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_pool(x, self.window, self.stride, self.padding, self.ceil_mode)


class AvgPool(nn.Module):
    """`avg_pool` (no padding) as a layer, so that model summaries see it."""

    window: int
    stride: int | None = None

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_pool(x, self.window, self.stride)

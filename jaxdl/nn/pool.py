"""Pooling on NHWC input, with PyTorch's padding and ceil_mode semantics where models need them
(the zoo's shapes follow the reference implementations)."""

from __future__ import annotations

import functools
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
    x: jax.Array,
    window: int,
    stride: int,
    padding: int = 0,
    ceil_mode: bool = False,
    layers: str = "auto",
) -> jax.Array:
    """Max pooling f32[B, H, W, C] -> f32[B, H', W', C] (padding counts as -inf).

    On the XLA:CPU path (`jaxdl.nn.conv.use_fast_path` of `layers`) the maximum is taken over
    the window's shifted, strided slices: XLA:CPU's reduce-window is slow and its gradient
    (select-and-scatter) far slower, while slices and elementwise maxima fuse with their
    neighbours. The values are the same; where several inputs tie for a window's maximum, the
    gradient goes to the first of them in row-major window order (reduce-window's gradient
    picks one as well).
    """
    extra_h = _ceil_extra(x.shape[1], window, stride, padding) if ceil_mode else 0
    extra_w = _ceil_extra(x.shape[2], window, stride, padding) if ceil_mode else 0
    pads = ((padding, padding + extra_h), (padding, padding + extra_w))
    if use_fast_path(layers, x.dtype):
        return _max_pool_by_slices(x, window, stride, pads)
    return nn.max_pool(x, (window, window), (stride, stride), padding=pads)


def _max_pool_by_slices(x: jax.Array, window: int, stride: int, pads) -> jax.Array:
    if any(pads[0] + pads[1]):
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-jnp.inf)
    if window == stride:
        return _tiled_max_pool(x, window)
    # Overlapping windows: a chain of elementwise maxima of the window's shifted, strided slices.
    _, h, w, _ = x.shape
    out_h, out_w = (h - window) // stride + 1, (w - window) // stride + 1
    result = None
    for dy in range(window):
        for dx in range(window):
            part = x[:, dy : dy + stride * (out_h - 1) + 1 : stride,
                     dx : dx + stride * (out_w - 1) + 1 : stride]  # fmt: skip
            result = part if result is None else jnp.maximum(result, part)
    return result


def _tiles(x: jax.Array, size: int) -> jax.Array:
    """f32[B, H, W, C] -> f32[B, H // size, size, W // size, size, C] (a remainder is dropped)."""
    b, h, w, c = x.shape
    out_h, out_w = h // size, w // size
    return x[:, : out_h * size, : out_w * size].reshape(b, out_h, size, out_w, size, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max_pool(x: jax.Array, size: int) -> jax.Array:
    """Max pooling over non-overlapping size x size tiles; the gradient goes to the first
    maximum of each tile (row-major).

    Why a custom gradient: JAX's rule for `max` marks the inputs equal to the result and divides
    by their count. XLA may compute a fused producer of x (GELU, BatchNorm) once for the maximum
    and again for that comparison, with different rounding (vectorised and scalar code); then
    no input equals the maximum, the count is 0 and the gradient NaN (airbench94 trained to
    chance this way at --xla_backend_optimization_level=0). Here the forward pass records which
    element won, so the backward pass compares nothing; it is also faster on XLA:CPU
    (measured side by side, gradient of a 128x32x32x64 pool: 33.3 ms -> 21.9 ms; BENCHMARKS.md).
    """
    return _tiled_max_pool_fwd(x, size)[0]


def _tiled_max_pool_fwd(x, size):
    tiles = _tiles(x, size)
    index_dtype = jnp.int8 if size * size <= 127 else jnp.int32
    best = tiles[:, :, 0, :, 0, :]
    winner = jnp.zeros(best.shape, index_dtype)
    for k in range(1, size * size):
        part = tiles[:, :, k // size, :, k % size, :]
        better = (part > best) | jnp.isnan(part)  # a NaN wins, as in lax.max
        best = jnp.where(better, part, best)
        winner = jnp.where(better, jnp.asarray(k, index_dtype), winner)
    # the input's height and width travel as the shape of an empty array (residuals are arrays)
    return best, (winner, jnp.zeros((0, *x.shape[1:3]), x.dtype))


def _tiled_max_pool_bwd(size, residuals, g):
    winner, shape_only = residuals
    h, w = shape_only.shape[1:]
    b, out_h, out_w, c = g.shape
    zero = jnp.zeros((), g.dtype)
    routed = jnp.stack([jnp.where(winner == k, g, zero) for k in range(size * size)], axis=3)
    dx = (
        routed.reshape(b, out_h, out_w, size, size, c)
        .transpose(0, 1, 3, 2, 4, 5)
        .reshape(b, out_h * size, out_w * size, c)
    )
    return (jnp.pad(dx, ((0, 0), (0, h - out_h * size), (0, w - out_w * size), (0, 0))),)


_tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)


def avg_pool(x: jax.Array, window: int, stride: int | None = None, padding: int = 0) -> jax.Array:
    """Average pooling f32[B, H, W, C] -> f32[B, H', W', C], zero `padding` on every side
    counted in the averages (PyTorch's default, `count_include_pad=True`)."""
    stride = stride or window
    pads = ((padding, padding), (padding, padding))
    return nn.avg_pool(x, (window, window), (stride, stride), pads, count_include_pad=True)


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
    layers: str = "auto"

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_pool(x, self.window, self.stride, self.padding, self.ceil_mode, self.layers)


class AvgPool(nn.Module):
    """`avg_pool` as a layer, so that model summaries see it."""

    window: int
    stride: int | None = None
    padding: int = 0

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_pool(x, self.window, self.stride, self.padding)

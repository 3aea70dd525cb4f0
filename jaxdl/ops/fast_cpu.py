"""Convolution and BatchNorm written for XLA:CPU, used by `jaxdl.nn.Conv` / `BatchNorm`.

Two things cost a ResNet training step on XLA:CPU most of its time outside the convolutions
themselves (benchmarks/profile_step.py; BENCHMARKS.md has the figures):

1. **Weight-gradient transposes that recompute the network.** XLA:CPU computes a convolution's
   weight gradient as a convolution whose feature axis is the batch, so it first transposes the
   layer's input from [B, H, W, C] to [C, H, W, B]. XLA fuses the elementwise ops that produced
   that input (BatchNorm, ReLU, the residual adds of the blocks before it) into the transpose,
   so it re-reads several activations in transposed, cache-hostile order: ResNet-20's 19
   transposes took ~140 ms of a ~400 ms step. `conv_general_dilated` here passes the input
   through `opaque`, which XLA cannot fuse through, so the transpose reads one materialised
   array (~30 ms in all). An optimisation barrier does not do this: XLA:CPU drops barriers
   before fusion.
2. **BatchNorm reductions.** XLA:CPU lowers the per-channel sums over (B, H, W) to slow
   reduce-window loops (~60 ms a step for ResNet-20). `batch_norm_train` takes the sums as
   matrix-vector products on XLA's fast dot path instead, with the [M, C] activation viewed
   as wide rows (`_channel_sum`), and has a hand-written backward (two channel sums and one
   elementwise pass, the textbook BatchNorm gradient).

Both are mathematically the plain operations; tests/test_fast_cpu.py checks forward and
gradients against `lax.conv_general_dilated` and `flax.linen.BatchNorm` within float32
tolerance. `opaque` costs a device-side branch per layer, free on CPU but a host sync on GPU,
so jaxdl only uses this path on the CPU backend (see `jaxdl.nn.conv.use_fast_path`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

# How many floats wide the rows are that the channel sums reduce (see `_channel_sum`).
SUM_ROW_WIDTH = 16384


def opaque(x: jax.Array) -> jax.Array:
    """Returns `x` unchanged, as an array XLA must materialise and cannot fuse its producers
    through: a `lax.cond` whose two branches both return `x`, on a predicate XLA cannot
    evaluate at compile time (`isnan(v) | ~isnan(v)` of one element, always true)."""
    if x.size == 0:
        return x
    first = x.reshape(-1)[0]
    always = jnp.isnan(first) | ~jnp.isnan(first)
    return lax.cond(always, lambda v: v, lambda v: v + jnp.zeros((), v.dtype), x)


def _plain_conv(x, kernel, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers, groups):
    return lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count=groups,
    )


_conv = jax.custom_vjp(_plain_conv, nondiff_argnums=(2, 3, 4, 5, 6, 7))


def _conv_fwd(x, kernel, *static):
    x = opaque(x)
    return _plain_conv(x, kernel, *static), (x, kernel)


def _conv_bwd(*args):
    *static, (x, kernel), dy = args
    _, vjp = jax.vjp(lambda x, k: _plain_conv(x, k, *static), x, kernel)
    return vjp(dy)


_conv.defvjp(_conv_fwd, _conv_bwd)


_NHWC_HWIO = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def _smaller_than_kernel(
    lhs, rhs, strides, lhs_dilation, rhs_dilation, dimension_numbers, groups
) -> bool:
    """A plain NHWC 2-D convolution (stride 1, no dilation or groups) whose input is smaller
    than its kernel in height or width: a 3x3 convolution on 2x2 or 1x1 feature maps, as at the
    end of VGG-style CIFAR nets. XLA:CPU's convolution is pathologically slow there (measured,
    batch 128, forward: 512 -> 512 channels on 2x2 1,160 ms, on 1x1 30 ms; as one dot 7.4 and
    2.4 ms; from 3x3 maps up the convolution is as fast or faster)."""
    if lhs.ndim != 4 or groups != 1 or any(s != 1 for s in strides):
        return False
    if any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ())):
        return False
    numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    return numbers == _NHWC_HWIO and (lhs.shape[1] < rhs.shape[0] or lhs.shape[2] < rhs.shape[1])


# Grouped convolutions with at most this many groups run as one convolution with a
# block-diagonal kernel (see `block_diagonal_kernel`).
MAX_BLOCK_DIAGONAL_GROUPS = 64


def block_diagonal_kernel(kernel: jax.Array, groups: int) -> jax.Array:
    """f32[kh, kw, C / groups, F] grouped HWIO kernel -> f32[kh, kw, C, F], zero outside each
    group's block: the same convolution without `feature_group_count`.

    Why: XLA:CPU's grouped convolution is pathologically slow, its backward pass above all.
    Measured, batch 128, 32 groups (ResNeXt's 3x3 layers), forward + backward: 32x32x128
    30,393 ms grouped vs 890 ms block-diagonal, 16x16x256 15,060 vs 492, 8x8x512 7,284 vs 325
    — 22-34x faster despite groups-times the multiply-adds. The kernel's gradient is the
    block-diagonal gradient's blocks (the zeros are constants)."""
    kh, kw, group_in, features = kernel.shape
    blocks = kernel.reshape(kh, kw, group_in, groups, features // groups)
    eye = jnp.eye(groups, dtype=kernel.dtype)
    full = jnp.einsum("hwigj,gG->hwGigj", blocks, eye)
    return full.reshape(kh, kw, groups * group_in, features)


def _conv_as_dot(lhs, rhs, padding):
    """The convolution as one matrix product: the padded input's kh * kw shifted windows
    concatenated along channels, times the kernel reshaped to [kh * kw * C, F]."""
    kh, kw, channels, features = rhs.shape
    x = jnp.pad(lhs, ((0, 0), padding[0], padding[1], (0, 0)))
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    windows = [x[:, i : i + out_h, j : j + out_w, :] for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(windows, axis=-1).reshape(-1, kh * kw * channels)
    out = patches @ rhs.reshape(kh * kw * channels, features)
    return out.reshape(lhs.shape[0], out_h, out_w, features)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """`lax.conv_general_dilated`'s signature (as `flax.linen.Conv` calls it), with the input
    made `opaque` for the weight gradient. Falls back to the plain op for what it does not
    cover (batch groups, explicit precision or output type)."""
    if batch_group_count != 1 or precision is not None or preferred_element_type is not None:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            batch_group_count,
            precision,
            preferred_element_type,
        )
    if isinstance(padding, str):
        spatial = lhs.shape[1:-1]
        window = rhs.shape[:-2]
        dilation = rhs_dilation or (1,) * len(window)
        dilated = [(w - 1) * d + 1 for w, d in zip(window, dilation, strict=True)]
        padding = lax.padtype_to_pads(spatial, dilated, window_strides, padding)
    if 1 < feature_group_count <= MAX_BLOCK_DIAGONAL_GROUPS and lhs.ndim == 4:
        numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        if numbers == _NHWC_HWIO:
            rhs = block_diagonal_kernel(rhs, feature_group_count)
            feature_group_count = 1
    if _smaller_than_kernel(lhs, rhs, window_strides, lhs_dilation, rhs_dilation,
                            dimension_numbers, feature_group_count):  # fmt: skip
        return _conv_as_dot(lhs, rhs, padding)
    return _conv(
        lhs,
        rhs,
        tuple(window_strides),
        tuple((int(lo), int(hi)) for lo, hi in padding),
        None if lhs_dilation is None else tuple(lhs_dilation),
        None if rhs_dilation is None else tuple(rhs_dilation),
        dimension_numbers,
        feature_group_count,
    )


def rows_per_fold(num_rows: int, channels: int, width: int = SUM_ROW_WIDTH) -> int:
    """The largest power of two k dividing `num_rows` with k * channels <= width (at least 1)."""
    k = 1
    while num_rows % (2 * k) == 0 and 2 * k * channels <= width:
        k *= 2
    return k


def _channel_sum(m: jax.Array) -> jax.Array:
    """f32[M, C] -> f32[C], the sum over rows.

    XLA:CPU's column reductions are slow, and so is ones[M] @ m when the output is only
    C = 16-64 wide, however long M is. So m is viewed as [M / k, k * C] (k rows side by side,
    up to SUM_ROW_WIDTH floats: a free reshape of the contiguous array), reduced by ones @
    that, and the k partial sums are added: 1.4-3.6x faster on ResNet-20's activations
    (`python -m benchmarks.channel_sums`; BENCHMARKS.md)."""
    num_rows, channels = m.shape
    k = rows_per_fold(num_rows, channels)
    rows = m.reshape(num_rows // k, k * channels)
    return (jnp.ones((rows.shape[0],), m.dtype) @ rows).reshape(k, channels).sum(axis=0)


def _channel_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """sum over rows of a * b, f32[M, C] x f32[M, C] -> f32[C]."""
    return _channel_sum(a * b)


def batch_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and (biased) variance of f32[..., C] over every other axis."""
    m = x.reshape(-1, x.shape[-1])
    n = m.shape[0]
    mean = _channel_sum(m) / n
    var = jnp.maximum(_channel_dot(m, m) / n - jnp.square(mean), 0.0)
    return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, epsilon):
    """Training-mode BatchNorm of f32[..., C] (or bf16, computed in float32 as flax does) with
    the batch's statistics.

    Returns (y [..., C] in x's dtype, mean f32[C], var f32[C]); `mean` and `var` are for the
    running averages and carry no gradient.
    """
    return _bn_fwd(x, scale, bias, epsilon)[0]


def _bn_fwd(x, scale, bias, epsilon):
    x32 = x.astype(jnp.float32)  # no-ops for float32
    mean, var = batch_stats(x32)
    inv = lax.rsqrt(var + epsilon)
    a = scale * inv
    y = (x32 * a + (bias - mean * a)).astype(x.dtype)
    return (y, mean, var), (x, mean, inv, scale)


def _bn_bwd(epsilon, res, cotangents):
    x_in, mean, inv, scale = res
    x, dy = x_in.astype(jnp.float32), cotangents[0].astype(jnp.float32)  # dy: only y's cotangent
    m, g = x.reshape(-1, x.shape[-1]), dy.reshape(-1, x.shape[-1])
    n = m.shape[0]
    dbias = _channel_sum(g)
    dscale = (_channel_dot(g, m) - mean * dbias) * inv  # sum(dy * xhat)
    # dx = scale * inv / n * (n dy - sum(dy) - xhat * sum(dy * xhat)), as one affine map of dy, x
    k = scale * inv / n
    coef_x = -k * dscale * inv
    dx = (k * n) * dy + coef_x * x + (-k * dbias - coef_x * mean)
    return dx.astype(x_in.dtype), dscale, dbias


batch_norm_train.defvjp(_bn_fwd, _bn_bwd)

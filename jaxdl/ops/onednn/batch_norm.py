"""Training-mode BatchNorm fused with the residual add and ReLU after it, on jaxdl's CPU kernels.

`batch_norm_train(x, scale, bias, residual, epsilon, relu)` computes

    y = relu?(scale * (x - mean) / sqrt(var + epsilon) + bias + residual?)

with the batch's per-channel mean and biased variance over every axis of x but the last, as
two FFI calls (`batch_norm.cc`): a forward that returns y, mean and var, and a backward that
returns the gradients of x, scale, bias (and the residual). It is the textbook BatchNorm
gradient, the same as `jaxdl.ops.fast_cpu.batch_norm_train`'s; the difference is memory
traffic: XLA reads and writes each activation several times for the statistics, the
normalisation, the gradient's sums and its affine map, where the kernels read x twice and
write y once going forward, read dy, x (and y, after an add) twice and write dx (and the
residual's gradient) once going back. ResNet-20's train step spends ~80 ms of ~185 ms on that work
under XLA (`benchmarks.profile_step`; BENCHMARKS.md has the figures).

Used by `jaxdl.nn.BatchNorm` in training under the "onednn" and "auto" layers when the library
loaded; one device (BatchNorm synchronised across devices stays flax's). The activations and
their gradients are float32, or all bfloat16 (widened to float32 as they are read, rounded as
they are written: float32 arithmetic on half the memory traffic); scale, bias and the
statistics are float32. Under
`jax.vmap` each call loops over the mapped axis (`vmap_method="sequential"`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.ops import onednn


def _call(target: str, results, *operands, **attributes):
    """`results`: (shape, dtype) pairs."""
    current = onednn.status()  # registers the kernels with XLA on first use
    if not current.available:
        raise RuntimeError(f"jaxdl: {current.line()}; use fast_cpu.batch_norm_train instead.")
    shapes = [jax.ShapeDtypeStruct(tuple(shape), dtype) for shape, dtype in results]
    return jax.ffi.ffi_call(target, shapes, vmap_method="sequential")(*operands, **attributes)


def forward(x, scale, bias, residual, epsilon: float, relu: bool):
    """(y [..., C] in x's dtype, mean f32[C], var f32[C]) of the fused BatchNorm."""
    channels = ((x.shape[-1],), jnp.float32)
    operands = (x, scale, bias) if residual is None else (x, residual, scale, bias)
    target = "jaxdl_batch_norm_forward" + ("" if residual is None else "_add")
    return tuple(
        _call(target, ((x.shape, x.dtype), channels, channels), *operands,
              epsilon=np.float32(epsilon), relu=np.bool_(relu))
    )  # fmt: skip


def backward(
    dy, x, scale, mean, var, epsilon: float, relu: bool, residual: bool, y=None, bias=None
):
    """(dx, dscale, dbias) and, with `residual`, the residual's gradient as a fourth.

    With `relu`, the ReLU's mask comes from the forward's output `y` after an add (`residual`),
    and from x and `bias` without one (x * a + b > 0, the forward's own arithmetic), which
    spares reading y.
    """
    channels = ((x.shape[-1],), jnp.float32)
    activations = (x.shape, x.dtype)
    results = (activations, channels, channels) + ((activations,) if residual else ())
    if relu and residual:
        operands = (dy, x, y, scale)
    elif relu:
        operands = (dy, x, scale, bias)
    else:
        operands = (dy, x, scale)
    target = "jaxdl_batch_norm_backward" + ("_relu" if relu else "") + ("_add" if residual else "")
    return tuple(_call(target, results, *operands, mean, var, epsilon=np.float32(epsilon)))


def batch_norm_train(x, scale, bias, residual, epsilon: float, relu: bool):
    """relu?(BatchNorm(x) + residual?) of f32[..., C] (or bf16) with the batch's statistics.

    `residual` is None or an array shaped like x, of its dtype. Returns (y [..., C] in x's
    dtype, mean f32[C], var f32[C]); `mean` and `var` are for the running averages and carry
    no gradient.
    """
    if residual is None:
        return _batch_norm(x, scale, bias, float(epsilon), bool(relu))
    return _batch_norm_add(x, residual, scale, bias, float(epsilon), bool(relu))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm(x, scale, bias, epsilon, relu):
    return forward(x, scale, bias, None, epsilon, relu)


def _fwd(x, scale, bias, epsilon, relu):
    y, mean, var = forward(x, scale, bias, None, epsilon, relu)
    return (y, mean, var), (x, scale, bias if relu else None, mean, var)


def _bwd(epsilon, relu, saved, cotangents):
    x, scale, bias, mean, var = saved
    return backward(cotangents[0], x, scale, mean, var, epsilon, relu, False, bias=bias)


_batch_norm.defvjp(_fwd, _bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _batch_norm_add(x, residual, scale, bias, epsilon, relu):
    return forward(x, scale, bias, residual, epsilon, relu)


def _add_fwd(x, residual, scale, bias, epsilon, relu):
    y, mean, var = forward(x, scale, bias, residual, epsilon, relu)
    return (y, mean, var), (x, y if relu else None, scale, mean, var)


def _add_bwd(epsilon, relu, saved, cotangents):
    x, y, scale, mean, var = saved
    dx, dscale, dbias, dresidual = backward(
        cotangents[0], x, scale, mean, var, epsilon, relu, True, y=y
    )
    return dx, dresidual, dscale, dbias


_batch_norm_add.defvjp(_add_fwd, _add_bwd)

"""oneDNN convolutions behind `jax.jit`, through XLA's FFI: the "onednn" layer implementation.

`conv_general_dilated` has `lax.conv_general_dilated`'s signature (as `flax.linen.Conv`
calls it). For a float32 NHWC / HWIO 2-D convolution (any kernel size, strides, explicit or
asymmetric padding, dilation, groups) it runs oneDNN's forward, backward-data and
backward-weights kernels (`conv.cc`) as three `jax.ffi.ffi_call`s tied together by a
`jax.custom_vjp`; a bfloat16 one too on CPUs with bfloat16 instructions (`native_bfloat16`:
AVX512-BF16 or AMX), where oneDNN multiplies in bfloat16 and accumulates in float32.
`inference` is the evaluation convolution, float32, with a bias, the residual add and ReLU as
oneDNN post-ops (BatchNorm folded in by `jaxdl.nn.conv.ConvBN`). Everything else (other
layouts and dtypes) and every convolution when the library is missing goes to
`jaxdl.ops.fast_cpu`, XLA's path.

Why: XLA:CPU's convolutions are Eigen's, 1.2-3.2x slower per pass than oneDNN's on ResNet
shapes (BENCHMARKS.md), and PyTorch's CPU convolutions are oneDNN's.

The same library holds jaxdl's fused training-mode BatchNorm (+ residual add + ReLU) kernels,
`batch_norm.cc`, called through `jaxdl.ops.onednn.batch_norm`.

The library is built by `make install` (`python -m jaxdl.ops.onednn.build`); `python -m
jaxdl.ops.onednn` prints whether it loaded, and why not. `JAXDL_ONEDNN=0` turns it off;
`JAXDL_ONEDNN_LIBRARY` loads another build. When it cannot load, jaxdl says so in one line
on stderr the first time a convolution asks for it, and runs on XLA.

Under `jax.vmap` each call loops over the mapped axis (`vmap_method="sequential"`). The
calls are per device: under `pmap` each device runs its own; a sharded `jit` would gather
every input onto every device, so `jaxdl.parallel` gives sharded runs the XLA path.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdl.ops import fast_cpu

TARGETS = {
    "jaxdl_conv_forward": "JaxdlConvForward",
    "jaxdl_conv_backward_data": "JaxdlConvBackwardData",
    "jaxdl_conv_backward_weights": "JaxdlConvBackwardWeights",
    # the weight gradient as im2col + one sgemm over the batch (conv_gemm.cc), groups 1
    "jaxdl_conv_backward_weights_gemm": "JaxdlConvBackwardWeightsGemm",
    # evaluation: BatchNorm folded in, the residual add and ReLU as oneDNN post-ops
    "jaxdl_conv_inference": "JaxdlConvInference",
    "jaxdl_conv_inference_add": "JaxdlConvInferenceAdd",
    # BatchNorm fused with its residual add and ReLU (batch_norm.cc; `jaxdl.ops.onednn.batch_norm`)
    "jaxdl_batch_norm_forward": "JaxdlBatchNormForward",
    "jaxdl_batch_norm_forward_add": "JaxdlBatchNormForwardAdd",
    "jaxdl_batch_norm_backward": "JaxdlBatchNormBackward",
    "jaxdl_batch_norm_backward_relu": "JaxdlBatchNormBackwardRelu",
    "jaxdl_batch_norm_backward_add": "JaxdlBatchNormBackwardAdd",
    "jaxdl_batch_norm_backward_relu_add": "JaxdlBatchNormBackwardReluAdd",
}
PASSES = ("forward", "backward_data", "backward_weights")
INFERENCE_PASS = 3  # conv.cc's index of the evaluation convolution (`inference`)


@dataclasses.dataclass(frozen=True)
class Status:
    """Whether the oneDNN kernels are in use, and what they run on."""

    available: bool
    reason: str  # why not, or where the library was loaded from
    version: str = ""  # oneDNN's, e.g. "3.2.0"
    isa: str = ""  # the instruction set oneDNN dispatches to, e.g. "avx512_core_bf16"

    @property
    def bfloat16(self) -> bool:
        """Whether oneDNN runs bfloat16 convolutions on this CPU's own bfloat16 instructions."""
        return self.available and self.isa in BFLOAT16_ISAS

    def line(self) -> str:
        if self.available:
            bf16 = "with" if self.bfloat16 else "without"
            return (
                f"oneDNN {self.version} kernels on {self.isa}, {bf16} bfloat16 convolutions "
                f"({self.reason})"
            )
        return f"oneDNN kernels unavailable: {self.reason}; convolutions run on XLA"


# The instruction sets on which oneDNN's bfloat16 convolutions run on bfloat16 instructions
# (elsewhere oneDNN 3.2 emulates them, or has no kernel, and XLA's are taken).
BFLOAT16_ISAS = ("avx512_core_bf16", "avx512_core_fp16", "avx512_core_amx", "avx512_core_amx_fp16")


@functools.cache
def _load() -> tuple[Status, ctypes.CDLL | None]:
    from jaxdl.ops.onednn import build  # not at the top: `python -m ...build` imports us first

    if os.environ.get("JAXDL_ONEDNN", "1") == "0":
        return Status(False, "turned off by JAXDL_ONEDNN=0"), None
    if not build.supported_platform():
        return Status(False, f"no oneDNN build for {sys.platform} {platform.machine()}"), None
    # $JAXDL_ONEDNN_LIBRARY, else what `make install` built
    path = Path(os.environ.get("JAXDL_ONEDNN_LIBRARY") or build.LIBRARY)
    if not path.exists():
        return Status(False, f"{path} is not built (run make install)"), None
    try:
        lib = ctypes.cdll.LoadLibrary(str(path))
        for target, symbol in TARGETS.items():
            jax.ffi.register_ffi_target(
                target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu"
            )
    except (OSError, AttributeError) as error:
        return Status(False, f"{path} did not load ({error})"), None
    version = ctypes.create_string_buffer(32)
    lib.jaxdl_onednn_version(version, ctypes.c_size_t(32))
    lib.jaxdl_onednn_isa.restype = ctypes.c_char_p
    isa = lib.jaxdl_onednn_isa().decode()
    return Status(True, str(path), version.value.decode(), isa), lib


def status() -> Status:
    """Loads the library (once) and says whether it is in use."""
    return _load()[0]


def native_bfloat16() -> bool:
    """Whether the library loaded and oneDNN runs bfloat16 convolutions on this CPU's own
    bfloat16 instructions (`BFLOAT16_ISAS`)."""
    return status().bfloat16


@functools.cache
def available() -> bool:
    """Whether oneDNN's kernels are in use; the first time they are not, says why on stderr."""
    current = status()
    if not current.available:
        print(f"jaxdl: {current.line()}", file=sys.stderr)
    return current.available


class ConvSpec(NamedTuple):
    """A convolution's options as the kernels take them (all static)."""

    strides: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    dilation: tuple[int, int]
    groups: int


def output_hw(x_shape, kernel_shape, spec: ConvSpec) -> tuple[int, int]:
    """The output's (height, width) for NHWC input and HWIO kernel shapes."""
    out = []
    for axis in (0, 1):
        size = x_shape[1 + axis] + spec.padding[2 * axis] + spec.padding[2 * axis + 1]
        span = (kernel_shape[axis] - 1) * spec.dilation[axis] + 1
        out.append((size - span) // spec.strides[axis] + 1)
    return out[0], out[1]


def _attributes(spec: ConvSpec, impl: int) -> dict:
    return {
        "strides": np.asarray(spec.strides, np.int64),
        "padding": np.asarray(spec.padding, np.int64),
        "dilation": np.asarray(spec.dilation, np.int64),
        "groups": np.int64(spec.groups),
        "impl": np.int64(impl),
    }


def _call(
    target: str, shape, *operands, spec: ConvSpec, impl: int, aliases=None, **attributes
) -> jax.Array:
    current = status()  # registers the kernels with XLA on first use
    if not current.available:
        raise RuntimeError(f"jaxdl: {current.line()}; use conv_general_dilated to fall back.")
    result = jax.ShapeDtypeStruct(tuple(shape), operands[0].dtype)  # the operands' dtype
    call = jax.ffi.ffi_call(target, result, vmap_method="sequential", input_output_aliases=aliases)
    return call(*operands, **_attributes(spec, impl), **attributes)


# Each pass takes `impl`, which of oneDNN's implementations for the shape to run: 0 is oneDNN's
# own first choice, 1 the next in its list, and so on (`implementation` names them; the tuner
# times them, `jaxdl.ops.onednn.tuning`).


def forward(x: jax.Array, kernel: jax.Array, spec: ConvSpec, impl: int = 0) -> jax.Array:
    """f32[N, H, W, C] * f32[kh, kw, C / groups, F] -> f32[N, H', W', F], or all bf16 (where
    `native_bfloat16`); so the gradients too."""
    height, width = output_hw(x.shape, kernel.shape, spec)
    return _call("jaxdl_conv_forward", (x.shape[0], height, width, kernel.shape[3]), x, kernel,
                 spec=spec, impl=impl)  # fmt: skip


def backward_data(
    dy: jax.Array, kernel: jax.Array, x_shape, spec: ConvSpec, impl: int = 0
) -> jax.Array:
    """The input gradient f32[N, H, W, C] from the output gradient f32[N, H', W', F]."""
    return _call("jaxdl_conv_backward_data", x_shape, dy, kernel, spec=spec, impl=impl)


def backward_weights(
    x: jax.Array, dy: jax.Array, kernel_shape, spec: ConvSpec, impl: int = 0
) -> jax.Array:
    """The kernel gradient f32[kh, kw, C / groups, F] from the input and output gradient."""
    return _call("jaxdl_conv_backward_weights", kernel_shape, x, dy, spec=spec, impl=impl)


def backward_weights_gemm(x: jax.Array, dy: jax.Array, kernel_shape, spec: ConvSpec) -> jax.Array:
    """`backward_weights` as im2col + one matrix product over the batch (`conv_gemm.cc`), for
    groups 1: faster than oneDNN's own kernel on wide layers of CPUs without its brgemm
    weight-gradient kernels (AVX2); the tuner times both."""
    if spec.groups != 1:
        raise ValueError(f"backward_weights_gemm takes groups 1, not {spec.groups}.")
    if x.dtype != jnp.float32 or dy.dtype != jnp.float32:
        raise ValueError(f"backward_weights_gemm takes float32, not {x.dtype} and {dy.dtype}.")
    return _call("jaxdl_conv_backward_weights_gemm", kernel_shape, x, dy, spec=spec, impl=0)


def inference(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array,
    spec: ConvSpec,
    residual: jax.Array | None = None,
    relu: bool = False,
    impl: int = 0,
) -> jax.Array:
    """The evaluation convolution, one oneDNN call: relu?(conv(x, kernel) + bias (+
    residual)), f32[N, H, W, C] * f32[kh, kw, C / groups, F] + f32[F] (+ f32[N, H', W', F])
    -> f32[N, H', W', F]. A BatchNorm with running statistics folds into `kernel` and `bias`
    (`jaxdl.nn.conv.ConvBN`); the add and ReLU are oneDNN post-ops, so the output is written
    once, not once by the convolution and again by the normalisation. The residual's buffer
    becomes the output's. `impl` as the other passes take it, or oneDNN's last if it lists
    fewer. Differentiable (saliency maps and Grad-CAM differentiate an evaluation model): the
    backward pass runs oneDNN's backward-data and backward-weights kernels."""
    return _inference(x, kernel, bias, residual, spec, bool(relu), impl, residual is not None)


def _inference_call(x, kernel, bias, residual, spec, relu, impl):
    height, width = output_hw(x.shape, kernel.shape, spec)
    shape = (x.shape[0], height, width, kernel.shape[3])
    if residual is None:
        return _call("jaxdl_conv_inference", shape, x, kernel, bias, spec=spec, impl=impl,
                     relu=relu)  # fmt: skip
    return _call("jaxdl_conv_inference_add", shape, x, kernel, bias, residual, spec=spec,
                 impl=impl, aliases={3: 0}, relu=relu)  # fmt: skip


# `residual` is an array or None (an empty pytree, whose cotangent is None); `has_residual`
# says which, statically, for the backward pass.
@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _inference(x, kernel, bias, residual, spec, relu, impl, has_residual):
    return _inference_call(x, kernel, bias, residual, spec, relu, impl)


def _inference_fwd(x, kernel, bias, residual, spec, relu, impl, has_residual):
    y = _inference_call(x, kernel, bias, residual, spec, relu, impl)
    return y, (x, kernel, y if relu else None)


def _inference_bwd(spec, relu, impl, has_residual, saved, dy):
    """(dx, dkernel, dbias, dresidual): the residual's gradient is the output's before ReLU."""
    x, kernel, y = saved
    g = jnp.where(y > 0, dy, 0.0) if relu else dy
    dx = backward_data(g, kernel, x.shape, spec)
    dkernel = backward_weights(x, g, kernel.shape, spec)
    return dx, dkernel, jnp.sum(g, axis=(0, 1, 2)), g if has_residual else None


_inference.defvjp(_inference_fwd, _inference_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """The oneDNN convolution with its gradients, f32[N, H, W, C] -> f32[N, H', W', F]."""
    return forward(x, kernel, spec)


def _conv_fwd(x, kernel, spec):
    return forward(x, kernel, spec), (x, kernel)


def _conv_bwd(spec, residuals, dy):
    x, kernel = residuals
    # Two calls, not one: XLA drops the input gradient nobody uses (the image's, at the stem).
    # One call for both measured no faster on ResNet-20's step (BENCHMARKS.md).
    return backward_data(dy, kernel, x.shape, spec), backward_weights(x, dy, kernel.shape, spec)


conv.defvjp(_conv_fwd, _conv_bwd)


_NHWC_HWIO = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def conv_spec(
    lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
    feature_group_count, batch_group_count, precision, preferred_element_type,
) -> ConvSpec | None:  # fmt: skip
    """The `ConvSpec` of a `lax.conv_general_dilated` call the kernels cover, else None."""
    if lhs.ndim != 4 or rhs.ndim != 4 or batch_group_count != 1:
        return None
    if precision is not None or preferred_element_type is not None:
        return None
    if lhs.dtype != rhs.dtype or lhs.size == 0 or rhs.size == 0:
        return None
    if lhs.dtype != jnp.float32 and not (lhs.dtype == jnp.bfloat16 and native_bfloat16()):
        return None
    if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _NHWC_HWIO:
        return None
    if any(d != 1 for d in (lhs_dilation or (1, 1))):
        return None  # a transposed convolution: XLA's
    dilation = tuple(int(d) for d in (rhs_dilation or (1, 1)))
    if isinstance(padding, str):
        spans = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation, strict=True)]
        padding = lax.padtype_to_pads(lhs.shape[1:3], spans, window_strides, padding)
    pads = tuple(int(p) for pair in padding for p in pair)
    if any(p < 0 for p in pads):
        return None
    spec = ConvSpec(tuple(int(s) for s in window_strides), pads, dilation, int(feature_group_count))
    if min(output_hw(lhs.shape, rhs.shape, spec)) < 1:
        return None
    return spec


def covering(kernel_conv: Callable) -> Callable:
    """A `lax.conv_general_dilated`-compatible function (as `flax.linen.Conv` calls it) that
    runs `kernel_conv(lhs, rhs, spec)` where the oneDNN kernels cover the call and the library
    loaded, else XLA's path (`jaxdl.ops.fast_cpu.conv_general_dilated`)."""

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
        args = (lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                dimension_numbers, feature_group_count, batch_group_count, precision,
                preferred_element_type)  # fmt: skip
        spec = conv_spec(*args)
        if spec is None or not available():
            return fast_cpu.conv_general_dilated(*args)
        return kernel_conv(lhs, rhs, spec)

    return conv_general_dilated


# The "onednn" layers' convolution: oneDNN in every pass wherever it covers the call.
conv_general_dilated = covering(conv)


def implementation(
    pass_name: str, x_shape, kernel_shape, spec: ConvSpec, impl: int = 0, dtype=jnp.float32
) -> str | None:
    """The name oneDNN gives its `impl`-th implementation of one pass of a convolution (e.g.
    "brgconv:avx512_core") in `dtype` (float32 or bfloat16), None if it has fewer; creates
    (and caches) its primitive. `pass_name` is one of `PASSES`, or "inference" (`inference`
    without post-ops, float32)."""
    lib = _load()[1]
    if lib is None:
        return "unavailable"
    height, width = output_hw(x_shape, kernel_shape, spec)
    dims = (*x_shape, kernel_shape[0], kernel_shape[1], kernel_shape[3], height, width,
            *spec.strides, *spec.padding, *spec.dilation, spec.groups, 0,
            int(jnp.dtype(dtype) == jnp.bfloat16))  # fmt: skip
    index = INFERENCE_PASS if pass_name == "inference" else PASSES.index(pass_name)
    out = ctypes.create_string_buffer(256)
    failed = lib.jaxdl_conv_implementation(
        index, (ctypes.c_int64 * len(dims))(*dims), ctypes.c_int64(impl), out,
        ctypes.c_size_t(256),
    )  # fmt: skip
    return None if failed else out.value.decode()

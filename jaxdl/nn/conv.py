"""The one convolution and normalisation layer every model in the zoo uses.

Models never call `flax.linen.Conv` or `flax.linen.BatchNorm` directly: going through `Conv`,
`BatchNorm` and `ConvBN` here means the convolution and normalisation implementation can be
changed for the whole zoo in one place.

Three implementations sit behind them:

- "plain": `flax.linen.Conv` / `flax.linen.BatchNorm` as they are (XLA's convolutions);
- "fast": the same layers and parameters with the convolution's weight gradient and
  BatchNorm's statistics written for XLA:CPU (`jaxdl.ops.fast_cpu` says why and how much);
- "onednn": "fast" with the convolutions on oneDNN's kernels through XLA's FFI
  (`jaxdl.ops.onednn`) and training-mode BatchNorm, with the residual add and ReLU after it, on
  jaxdl's fused kernels (`jaxdl.ops.onednn.batch_norm`); in evaluation a `ConvBN` is one
  oneDNN call, its BatchNorm folded into the convolution; falling back to "fast" (and saying
  so) where the library is missing.

The default, "auto", on the CPU backend for float32 layers, runs each pass of each
convolution on the fastest of oneDNN's kernels and XLA's for its shape, timed once per machine
(`jaxdl.ops.onednn.tuning`), and BatchNorm as "onednn" does, or is "fast" when the library did
not load; it is "plain" everywhere else (GPU, TPU, BatchNorm synchronised across devices).
bfloat16 layers on the CPU backend are "plain" too, but on a CPU with bfloat16 instructions
(AVX512-BF16, AMX), where "auto" and "onednn" run the convolutions on oneDNN's bfloat16
kernels (tuned as above for "auto") and training BatchNorm on the fused kernels too, which
read and write bfloat16 and compute in float32.

The choice is a field of every layer and model (`layers`), set once when the model is created
(`models.create(name, layers=...)`, from the run's `--layers`), as flax's examples hand `conv`
to a model: nothing is read from a global when a step is traced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.nn.activations import activation
from jaxdl.ops import fast_cpu, onednn
from jaxdl.ops.onednn import batch_norm as onednn_batch_norm
from jaxdl.ops.onednn import tuning

LAYER_IMPLS = ("auto", "onednn", "fast", "plain")


def check_layer_impl(name: str) -> str:
    """`name` if it is one of `LAYER_IMPLS`, else one sentence saying which are."""
    if name not in LAYER_IMPLS:
        raise ConfigError(
            f"unknown layer implementation {name!r}; choose one of {', '.join(LAYER_IMPLS)}."
        )
    return name


def use_fast_path(layers: str, dtype: Any, cross_device: bool = False) -> bool:
    """Whether a layer with implementation `layers` and this dtype takes the XLA:CPU path (see
    the module docstring)."""
    impl = check_layer_impl(layers)
    if impl == "plain" or cross_device:
        return False
    if impl == "fast":
        return True
    if jax.default_backend() != "cpu":
        return False
    return jnp.dtype(dtype) == jnp.float32 or onednn_bfloat16(impl, dtype)


def onednn_bfloat16(layers: str, dtype: Any) -> bool:
    """Whether a bfloat16 `Conv` with implementation `layers` runs on oneDNN's bfloat16
    kernels: "auto" or "onednn" on the CPU backend of a CPU with bfloat16 instructions."""
    return (
        check_layer_impl(layers) in ("auto", "onednn")
        and jnp.dtype(dtype) == jnp.bfloat16
        and jax.default_backend() == "cpu"
        and onednn.native_bfloat16()
    )


def conv_function(layers: str, dtype: Any) -> Callable:
    """The `lax.conv_general_dilated`-compatible function a `Conv` with implementation
    `layers` and this dtype runs (see the module docstring)."""
    impl = check_layer_impl(layers)
    if not use_fast_path(impl, dtype):
        return jax.lax.conv_general_dilated
    if impl == "onednn":
        return onednn.conv_general_dilated
    if impl == "auto" and onednn.available():
        return tuning.conv_general_dilated
    return fast_cpu.conv_general_dilated


def fused_batch_norm(layers: str, dtype: Any) -> bool:
    """Whether a training-mode `BatchNorm` with implementation `layers` and this dtype runs on
    the fused kernels (`jaxdl.ops.onednn.batch_norm`; see the module docstring)."""
    impl = check_layer_impl(layers)
    return impl in ("auto", "onednn") and use_fast_path(impl, dtype) and onednn.available()


def fold_batch_norm(layers: str, dtype: Any) -> bool:
    """Whether an evaluation-mode `ConvBN` with implementation `layers` and this dtype runs as
    one oneDNN call with its BatchNorm folded in (`ConvBN._folded`): where training's
    BatchNorm runs on the fused kernels, in float32 (the folded call is float32's)."""
    return jnp.dtype(dtype) == jnp.float32 and fused_batch_norm(layers, dtype)


# He et al. 2015 "fan_out" normal init for ReLU convolutions, as torchvision's ResNet uses.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def resolve_padding(padding: Any, kernel_size: tuple[int, int], dilation: tuple[int, int]):
    """`Conv`'s `padding` as `lax.conv_general_dilated` takes it: None is dilation x (k // 2)
    on every side ("SAME" for even kernels), an int the same on every side."""
    if padding is None:
        padding = tuple(
            (d * (k // 2), d * (k // 2)) if k % 2 else "SAME"
            for k, d in zip(kernel_size, dilation, strict=True)
        )
        padding = "SAME" if "SAME" in padding else padding
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    return padding


class Conv(nn.Module):
    """2-D convolution on NHWC input: f32[B, H, W, C] -> f32[B, H', W', features].

    `padding` is None (the default: dilation x (k // 2) on every side, as PyTorch models write
    it, so a stride-2 layer samples the same pixels as the reference implementations and a
    stride-1 layer keeps the size), "SAME", "VALID", an int (symmetric) or flax's per-side
    pairs. `groups` > 1 gives a grouped convolution (ResNeXt); `groups` = C a depthwise one.
    `dilation` d spaces the kernel's taps d pixels apart (atrous convolution, as DeepLab uses):
    a k x k kernel then spans d (k - 1) + 1 pixels with k x k weights. Parameters: `kernel`
    [kh, kw, C / groups, features] and, with `use_bias`, `bias` [features].
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = None
    use_bias: bool = True
    groups: int = 1
    dilation: int | Sequence[int] = 1
    kernel_init: Callable = he_normal_fan_out
    bias_init: Callable = nn.initializers.zeros
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_size, dilation = _pair(self.kernel_size), _pair(self.dilation)
        return nn.Conv(
            self.features,
            kernel_size,
            strides=_pair(self.strides),
            padding=resolve_padding(self.padding, kernel_size, dilation),
            use_bias=self.use_bias,
            feature_group_count=self.groups,
            kernel_dilation=dilation,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            conv_general_dilated=conv_function(self.layers, self.dtype),
            name="conv",
        )(x)


def _add_relu(y: jax.Array, residual: jax.Array | None, relu: bool) -> jax.Array:
    y = y if residual is None else y + residual
    return nn.relu(y) if relu else y


class BatchNorm(nn.Module):
    """Batch normalisation over N, H, W of NHWC input (or N of [B, F]).

    In training (`train=True`) it normalises with the batch statistics and updates the running
    averages in the `batch_stats` collection; under `jax.pmap` with `axis_name` set, the batch
    statistics are averaged across devices so every replica normalises alike. `scale_init`
    zeros gives the zero-init residual trick (Goyal et al. 2017).

    `residual` (shaped like x) is added after the normalisation and `relu` applies a ReLU
    last: relu(BatchNorm(x) + residual), the end of a ResNet block, which the "onednn" layers
    compute in one fused kernel.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    scale_init: Callable = nn.initializers.ones
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        train: bool,
        residual: jax.Array | None = None,
        relu: bool = False,
    ) -> jax.Array:
        if use_fast_path(
            self.layers, self.dtype, cross_device=train and self.axis_name is not None
        ):
            return FastBatchNorm(
                use_running_average=not train,
                momentum=self.momentum,
                epsilon=self.epsilon,
                scale_init=self.scale_init,
                fused=fused_batch_norm(self.layers, self.dtype),
                name="bn",
            )(x, residual, relu)
        y = nn.BatchNorm(
            use_running_average=not train,
            momentum=self.momentum,
            epsilon=self.epsilon,
            axis_name=self.axis_name if train else None,
            scale_init=self.scale_init,
            dtype=self.dtype,
            name="bn",
        )(x)
        return _add_relu(y, residual, relu)


class FastBatchNorm(nn.Module):
    """`flax.linen.BatchNorm` over the last axis (same variables: params `scale`, `bias`;
    batch_stats `mean`, `var`, the biased batch variance, as flax keeps it), followed by the
    optional residual add and ReLU, computed by `fast_cpu.batch_norm_train` or, `fused`, by
    the fused kernels of `jaxdl.ops.onednn.batch_norm`; one device only. The output has the
    input's dtype; bfloat16 is normalised in float32, as flax does."""

    use_running_average: bool
    momentum: float = 0.9
    epsilon: float = 1e-5
    scale_init: Callable = nn.initializers.ones
    fused: bool = False

    @nn.compact
    def __call__(
        self, x: jax.Array, residual: jax.Array | None = None, relu: bool = False
    ) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", self.scale_init, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,)))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,)))
        if self.use_running_average:
            a = scale * jax.lax.rsqrt(ra_var.value + self.epsilon)
            y = (x * a + (bias - ra_mean.value * a)).astype(x.dtype)
            return _add_relu(y, residual, relu)
        if self.fused:
            if residual is not None:  # the kernels take one activation dtype
                residual = residual.astype(x.dtype)
            y, mean, var = onednn_batch_norm.batch_norm_train(
                x, scale, bias, residual, self.epsilon, relu
            )
        else:
            y, mean, var = fast_cpu.batch_norm_train(x, scale, bias, self.epsilon)
            y = _add_relu(y, residual, relu)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> (+ residual) -> activation; `act` "identity" leaves it
    linear. `residual`, shaped like the output, is a ResNet block's shortcut: with `act` "relu"
    the normalisation, add and ReLU are one `BatchNorm` call (one fused kernel on "onednn").
    In evaluation on oneDNN (`train=False`, layers "auto" or "onednn") the whole layer is one
    oneDNN call: the running statistics fold into the kernel and a bias, the add and ReLU run
    as the convolution's post-ops (`_folded`)."""

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Any = None
    groups: int = 1
    dilation: int | Sequence[int] = 1
    act: str = "relu"
    bn_scale_init: Callable = nn.initializers.ones
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, residual: jax.Array | None = None) -> jax.Array:
        conv = Conv(
            self.features,
            self.kernel_size,
            self.strides,
            self.padding,
            use_bias=False,
            groups=self.groups,
            dilation=self.dilation,
            dtype=self.dtype,
            layers=self.layers,
        )
        norm = BatchNorm(
            axis_name=self.axis_name,
            scale_init=self.bn_scale_init,
            dtype=self.dtype,
            layers=self.layers,
        )
        relu = self.act == "relu"
        y = None
        # not folded while initialising (the variables do not exist yet) nor while a caller
        # captures intermediates (`jaxdl.tools.introspect` wants every Conv's own output)
        capturing = self.is_mutable_collection("intermediates")
        if not (train or self.is_initializing() or capturing) and fold_batch_norm(
            self.layers, self.dtype
        ):
            y = self._folded(x, residual, relu, conv.name, norm.name, norm.epsilon)
        if y is None:
            y = norm(conv(x), train, residual, relu)
        return y if relu else activation(self.act)(y)

    def _folded(self, x, residual, relu, conv_name, norm_name, epsilon) -> jax.Array | None:
        """The evaluation path on oneDNN: BatchNorm's running statistics folded into the
        convolution's kernel and a bias, the residual add and ReLU as oneDNN post-ops, one
        kernel call writing the output once (`jaxdl.ops.onednn.inference`); None where that
        does not apply (a call oneDNN does not cover, or a shape the tuner gave to XLA)."""
        params, stats = self.variables["params"], self.variables["batch_stats"]
        kernel = params[conv_name]["conv"]["kernel"]
        bn_params, bn_stats = params[norm_name]["bn"], stats[norm_name]["bn"]
        scale = bn_params["scale"] * jax.lax.rsqrt(bn_stats["var"] + epsilon)
        shift = bn_params["bias"] - bn_stats["mean"] * scale
        kernel_size, dilation = _pair(self.kernel_size), _pair(self.dilation)
        padding = resolve_padding(self.padding, kernel_size, dilation)
        x = x.astype(self.dtype)
        spec = onednn.conv_spec(
            x, kernel, _pair(self.strides), padding, None, dilation, ("NHWC", "HWIO", "NHWC"),
            self.groups, 1, None, None,
        )  # fmt: skip
        if spec is None:
            return None
        choice = "onednn"
        if self.layers == "auto":
            choice = tuning.choose("forward", x.shape, kernel.shape, spec)
        kind, index = tuning.parse(choice)
        if kind != "onednn":
            return None
        return onednn.inference(x, kernel * scale, shift, spec, residual, relu, index)


def transpose_padding(kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """The (low, high) padding of the zero-dilated input that makes a transposed convolution
    with this `kernel` and `stride` "SAME" (output = input x stride) or "VALID" (output =
    (input - 1) x stride + kernel), as `lax.conv_transpose` pads."""
    if padding == "SAME":
        total = kernel + stride - 2
        low = kernel - 1 if stride > kernel - 1 else -(-total // 2)
    elif padding == "VALID":
        total = kernel + stride - 2 + max(kernel - stride, 0)
        low = kernel - 1
    else:
        raise ConfigError(
            f"transposed convolution padding must be 'SAME' or 'VALID', got {padding!r}."
        )
    return low, total - low


def _phase_taps(kernel: int, stride: int, low: int) -> tuple[int, np.ndarray]:
    """For one spatial axis of a transposed convolution whose zero-dilated input is padded by
    `low` in front: (the first input offset m0, taps i32[M, stride]). Output s·i + r sums
    kernel tap t times input i + m for every t with r + t - low = s·m; taps[u, r] is the t
    that meets input offset m0 + u in phase r, or `kernel` (a zero tap) where none does."""
    first = (0 - low) // stride
    last = (stride - 1 + kernel - 1 - low) // stride
    taps = np.full((last - first + 1, stride), kernel, np.int32)
    for r in range(stride):
        for t in range(kernel):
            if (r + t - low) % stride == 0:
                taps[(r + t - low) // stride - first, r] = t
    return first, taps


def subpixel_conv_transpose(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int],
    pads: Sequence[tuple[int, int]],
    conv: Callable = jax.lax.conv_general_dilated,
) -> jax.Array:
    """`conv(x, kernel, (1, 1), pads, lhs_dilation=strides)` (a transposed convolution of
    x f32[B, H, W, C] with kernel f32[kh, kw, C, F]; `pads` as `transpose_padding` gives them)
    without the dilation's zeros: each of the sh·sw output phases (r, q) (output rows
    sh·i + r, columns sw·j + q) is a stride-1 convolution of x with the kernel taps that meet
    real pixels there, so one `conv` with sh·sw·F outputs computes them all and a reshape
    interleaves them into f32[B, Ho, Wo, F] (the "sub-pixel" form, Shi et al. 2016)."""
    (kh, kw), (sh, sw) = kernel.shape[:2], strides
    batch, height, width, channels = x.shape
    out_h = (height - 1) * sh + 1 + sum(pads[0]) - kh + 1
    out_w = (width - 1) * sw + 1 + sum(pads[1]) - kw + 1
    rows, cols = -(-out_h // sh), -(-out_w // sw)  # each phase's output size
    first_h, taps_h = _phase_taps(kh, sh, pads[0][0])
    first_w, taps_w = _phase_taps(kw, sw, pads[1][0])
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # tap index kh / kw: zeros
    # [Mh, Mw, sh, sw, C, F] -> [Mh, Mw, C, sh·sw·F], outputs ordered (r, q, f)
    phased = padded[taps_h[:, None, :, None], taps_w[None, :, None, :]]
    phased = phased.transpose(0, 1, 4, 2, 3, 5).reshape(*phased.shape[:2], channels, -1)
    phase_pads = [
        (-first_h, rows - height + first_h + len(taps_h) - 1),
        (-first_w, cols - width + first_w + len(taps_w) - 1),
    ]
    y = conv(x, phased, (1, 1), phase_pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = y.reshape(batch, rows, cols, sh, sw, -1).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(batch, rows * sh, cols * sw, -1)[:, :out_h, :out_w]


class ConvTranspose(nn.Module):
    """2-D transposed convolution ("deconvolution") on NHWC input: f32[B, H, W, C] ->
    f32[B, H·s, W·s, features] with "SAME" padding (the default), f32[B, (H-1)·s + k, ...]
    with "VALID".

    The same operation as `flax.linen.ConvTranspose` (same parameters: `kernel` [kh, kw, C,
    features], `bias` [features]; `transpose_kernel=False`), computed without the zeros that
    `lax.conv_transpose` dilates the input with: as one stride-1 convolution of the input
    itself with s·s·features outputs, one per output phase, rearranged into the larger image
    (`subpixel_conv_transpose`). That convolution is the `layers` implementation's, like
    every `Conv`'s, so oneDNN's kernels serve it too; it does 4x fewer multiplications than
    the dilated form's for 4x4 kernels at stride 2 (a quarter of whose taps meet zeros).
    """

    features: int
    kernel_size: int | Sequence[int] = 4
    strides: int | Sequence[int] = 2
    padding: str = "SAME"
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_size, strides = _pair(self.kernel_size), _pair(self.strides)
        kernel = self.param("kernel", self.kernel_init, (*kernel_size, x.shape[-1], self.features))
        pads = [
            transpose_padding(k, s, self.padding) for k, s in zip(kernel_size, strides, strict=True)
        ]
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        conv = conv_function(self.layers, self.dtype)
        y = subpixel_conv_transpose(x, kernel, strides, pads, conv)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y

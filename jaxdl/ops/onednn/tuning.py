"""The fastest kernel for each convolution and pass, oneDNN's or XLA's, timed once per machine.

No one implementation wins every shape: oneDNN's kernels are 1.2-3x faster than XLA:CPU's on
ResNet-20's convolutions, while XLA's are faster on 4x4x512 maps (BENCHMARKS.md); and oneDNN's
own first pick among its kernels is not always its fastest here. So the "auto" layer
implementation asks `choose` for each convolution it traces: the kernel of each pass (forward,
input gradient, weight gradient) that ran fastest when this shape was timed, as cuDNN's
autotuner / `torch.backends.cudnn.benchmark` do.

A pass of a shape is timed the first time a step that uses it is traced (oneDNN's first three
implementations for it but its gemm and reference ones, "onednn", "onednn:1", "onednn:2";
for the weight gradient of an ungrouped convolution also jaxdl's "gemm", im2col + one sgemm
over the batch (`conv_gemm.cc`, faster than oneDNN 3.2's own on AVX2 CPUs' wide layers);
and XLA's; each jitted alone, the best of 5 rounds in which each takes its turn, of up to 3
calls after two warm-ups; an evaluation step times only the forward pass). oneDNN's first
choice is left only for a kernel 1.1x faster (`ONEDNN_MARGIN`), and XLA's is taken only if
it is 1.25x faster than that (`XLA_MARGIN`): near-ties rank differently from run to run.
The choice is remembered:

* in this process, so every later trace of that shape takes the same kernels;
* on disk, in `$JAXDL_CACHE_DIR/conv_choices.json` (default `~/.cache/jaxdl`), keyed by the
  CPU model (name, family, model and stepping), the instruction set oneDNN dispatches to, the
  oneDNN and jaxlib versions and the timing method, so the next run on this machine does not
  time it again;
* in the run directory (`conv_choices.json`, written by `jaxdl.train`), so a resumed run takes
  exactly the kernels the run started with (`pin`) and stays bit-identical.

Each pass timed is printed in one line, and a run's log says how many shapes run on which.
Override a choice by editing either file, all of them by choosing the layers (`--layers onednn`
for oneDNN everywhere it covers, `--layers fast` for XLA's). `JAXDL_CONV_TUNING=0` skips the
timing and takes oneDNN wherever it covers the call (the test suite does, so that its many
small models are not each timed).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.ops import fast_cpu, onednn
from jaxdl.ops.onednn import ConvSpec

IMPLEMENTATIONS = ("onednn", "gemm", "xla")
# oneDNN lists several implementations for a convolution pass, best first by its own guess;
# that guess is not always right here (ResNet-20's 32x32x16 forward: its first, brgconv, 3.5
# ms a call; its second, jit:avx512_core, 1.8 ms). So the tuner times its first few, each
# named "onednn:N" ("onednn" is N = 0), leaving out its gemm and reference fallbacks.
ONEDNN_CANDIDATES = 3
SLOW_KERNELS = ("gemm", "ref")


def parse(choice: str) -> tuple[str, int]:
    """("onednn", N), ("gemm", 0) or ("xla", 0) for a choice as the caches hold it."""
    kind, _, index = choice.partition(":")
    return kind, int(index or 0)


def valid(choice) -> bool:
    """Whether `choice` is "xla", "gemm", "onednn" or "onednn:N"."""
    if not isinstance(choice, str):
        return False
    kind, _, index = choice.partition(":")
    return choice in ("xla", "gemm") or (kind == "onednn" and (not index or index.isdigit()))


PASSES = onednn.PASSES


def shape_key(x_shape, kernel_shape, spec: ConvSpec, dtype=jnp.float32) -> str:
    """A readable key, e.g. "128x32x32x16*3x3x16x16 s1x1 p1x1x1x1 d1x1 g1" (float32; a
    bfloat16 convolution's ends in " bf16")."""
    join = lambda values: "x".join(str(int(v)) for v in values)
    suffix = " bf16" if jnp.dtype(dtype) == jnp.bfloat16 else ""
    return (
        f"{join(x_shape)}*{join(kernel_shape)} s{join(spec.strides)} p{join(spec.padding)} "
        f"d{join(spec.dilation)} g{spec.groups}{suffix}"
    )


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else the platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_identity() -> str:
    """The model name with its family, model and stepping numbers: virtual machines report
    generic names ("AMD EPYC") for CPUs of different generations and speeds."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
    except OSError:
        return cpu_model()
    numbers = [f"{k.split()[-1]} {fields[k]}" for k in ("cpu family", "model", "stepping")
               if k in fields]  # fmt: skip
    return f"{cpu_model()} ({', '.join(numbers)})" if numbers else cpu_model()


@functools.cache
def machine_key() -> str:
    """What a timing is only valid for: CPU, oneDNN's ISA and version, jaxlib's version, and
    how it was timed (`TIMING`)."""
    import jaxlib

    status = onednn.status()
    return (
        f"{cpu_identity()} | {status.isa} | oneDNN {status.version} | "
        f"jaxlib {jaxlib.__version__} | {TIMING}"
    )


def cache_file() -> Path:
    directory = os.environ.get("JAXDL_CACHE_DIR") or Path.home() / ".cache" / "jaxdl"
    return Path(directory) / "conv_choices.json"


_lock = threading.Lock()
_made: dict[str, dict[str, str]] = {}  # {shape key: {pass: impl}} used in this process
_changes = [0]  # how often `_made` gained or changed an entry (a cheap "anything new?")


def changes() -> int:
    """A counter that grows whenever a choice is made or pinned (so a caller can tell, for
    the price of an int comparison, whether `choices()` has anything new)."""
    return _changes[0]


def choices() -> dict[str, dict[str, str]]:
    """The choices this process has used so far: {shape key: {pass: "onednn[:N]" | "xla"}}."""
    with _lock:
        return {key: dict(sorted(value.items())) for key, value in sorted(_made.items())}


def pin(values: dict[str, dict[str, str]], source: str = "conv choices") -> None:
    """Makes these choices (as `choices()` returns them, read from `source`) win over the disk
    cache and over timing: a resumed run takes the kernels its checkpoints were trained with."""
    for key, value in values.items():
        _check(value, f"{source}: {key!r}")
    with _lock:
        for key, value in values.items():
            _made.setdefault(key, {}).update(value)
        _changes[0] += 1


def forget() -> None:
    """Forgets the choices this process made or was pinned to (the disk cache stays)."""
    with _lock:
        _made.clear()
        _changes[0] += 1


def _check(value: dict[str, str], where: str) -> None:
    gemm_elsewhere = any(v == "gemm" and p != "backward_weights" for p, v in value.items())
    if not set(value) <= set(PASSES) or not all(map(valid, value.values())) or gemm_elsewhere:
        raise ConfigError(
            f"{where} is {value!r}; its keys must be among {', '.join(PASSES)}, each one of "
            f"onednn, onednn:N, gemm (weight gradients), xla."
        )


def _read_cache() -> dict:
    try:
        return json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}


def cached_choices() -> dict[str, dict]:
    """This machine's entries of the disk cache: {shape key: {pass: impl, "ms": timings}}."""
    return _read_cache().get(machine_key(), {})


def _write_cache(key: str, pass_name: str, impl: str, timings: dict[str, float]) -> None:
    """Adds one choice to the disk cache (read, merge, atomic replace: other processes may be
    writing it too)."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = _read_cache()
        entry = table.setdefault(machine_key(), {}).setdefault(key, {})
        entry[pass_name] = impl
        entry.setdefault("ms", {})[pass_name] = timings
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(table, f, indent=1, sort_keys=True)
        os.replace(f.name, path)
    except OSError as error:  # a read-only home: the choice still holds for this process
        print(f"jaxdl: could not save convolution choices to {path} ({error})", file=sys.stderr)


def xla_conv(x, kernel, spec: ConvSpec):
    """The convolution on XLA's path (`jaxdl.ops.fast_cpu`, the "fast" layers')."""
    t, b, left, right = spec.padding
    return fast_cpu.conv_general_dilated(
        x, kernel, spec.strides, ((t, b), (left, right)), None, spec.dilation,
        ("NHWC", "HWIO", "NHWC"), spec.groups,
    )  # fmt: skip


def run_pass(pass_name: str, impl: str, spec: ConvSpec, a, b, shape=None):
    """One pass on one implementation, with the operands `jaxdl.ops.onednn`'s function of that
    pass takes: forward (x, kernel), backward_data (dy, kernel, `shape` of x),
    backward_weights (x, dy, `shape` of kernel)."""
    kind, index = parse(impl)
    if kind == "gemm":
        if pass_name != "backward_weights":
            raise ValueError(f"the gemm kernel computes weight gradients, not {pass_name}.")
        return onednn.backward_weights_gemm(a, b, shape, spec)
    if kind == "onednn":
        if pass_name == "forward":
            return onednn.forward(a, b, spec, index)
        return getattr(onednn, pass_name)(a, b, shape, spec, index)
    if pass_name == "forward":
        return xla_conv(a, b, spec)
    zeros = jnp.zeros(shape, a.dtype)  # the linearisation point: both gradients are linear
    if pass_name == "backward_data":
        return jax.vjp(lambda x: xla_conv(x, b, spec), zeros)[1](a)[0]
    # the input made opaque: XLA's weight gradient then reads one materialised array (fast_cpu)
    return jax.vjp(lambda k: xla_conv(fast_cpu.opaque(a), k, spec), zeros)[1](b)[0]


# How a pass is timed; part of the cache's key, so choices timed otherwise are timed again.
TIMING = (
    "best of 5 interleaved rounds of oneDNN's first 3 kernels, gemm weight gradients and XLA; "
    "oneDNN's first unless beaten by 1.1x, XLA by 1.25x"
)


def time_pass(pass_name: str, x_shape, kernel_shape, spec: ConvSpec, repeats: int = 5,
              calls: int = 3, dtype=jnp.float32) -> dict[str, float]:  # fmt: skip
    """{choice: ms} for one pass, each the best of `repeats` timings of up to `calls` calls
    after two warm-up calls, jitted, on random data of these shapes and `dtype`; the choices
    are oneDNN's first `ONEDNN_CANDIDATES` implementations but gemm and reference ones, the
    gemm weight gradient (float32), and XLA.

    The best, not the median: a pass is timed when a step is first traced, while the input
    pipeline's threads may be decoding batches, and oneDNN's OpenMP team, which waits for its
    slowest thread, is hit hardest by a thread taken away (oneDNN timings of 16 ms against 3
    were cached that way). Interference only adds time, so the minimum is the kernel's own.
    The candidates take turns, one timing each per round, so a slow spell of the machine
    falls on all of them rather than on whichever was being timed."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape, np.float32), dtype)
    kernel = jnp.asarray(0.1 * rng.standard_normal(kernel_shape, np.float32), dtype)
    height, width = onednn.output_hw(x_shape, kernel_shape, spec)
    dy_shape = (x_shape[0], height, width, kernel_shape[3])
    dy = jnp.asarray(rng.standard_normal(dy_shape, np.float32), dtype)
    a, b, shape = {"forward": (x, kernel, None), "backward_data": (dy, kernel, x_shape),
                   "backward_weights": (x, dy, kernel_shape)}[pass_name]  # fmt: skip
    candidates = []
    for index in range(ONEDNN_CANDIDATES):
        name = onednn.implementation(pass_name, x_shape, kernel_shape, spec, index, dtype)
        if name is None:
            break
        if index == 0 or not any(slow in name for slow in SLOW_KERNELS):
            candidates.append("onednn" if index == 0 else f"onednn:{index}")
    if pass_name == "backward_weights" and spec.groups == 1 and x.dtype == jnp.float32:
        candidates.append("gemm")  # im2col + sgemm (conv_gemm.cc)
    runs = {}
    for impl in (*candidates, "xla"):
        fn = jax.jit(lambda a, b, impl=impl: run_pass(pass_name, impl, spec, a, b, shape))
        runs[impl] = lambda fn=fn: fn(a, b)
    return best_ms_interleaved(runs, repeats, calls)


# A timing of one pass holds at most `calls` calls and at least this many ms' worth: big
# shapes (airbench94's at batch 1024, ~100 ms a pass) are timed one call at a time.
TIMING_MS = 20.0


def best_ms_interleaved(runs: dict[str, Callable], repeats: int, calls: int) -> dict[str, float]:
    """{name: ms a call}: the best of `repeats` timings of each of `runs`, the runs timed in
    turn within each round (after each has compiled and run once more untimed)."""
    counts = {}
    for name, run in runs.items():
        jax.block_until_ready(run())  # compiles
        start = time.perf_counter()
        jax.block_until_ready(run())
        first_ms = (time.perf_counter() - start) * 1e3
        counts[name] = max(1, min(calls, int(TIMING_MS / max(first_ms, 1e-3))))
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(counts[name]):
                out = run()
            jax.block_until_ready(out)
            best[name] = min(best[name], (time.perf_counter() - start) / counts[name] * 1e3)
    return best


# XLA's convolution must beat oneDNN's by this factor alone to be chosen. In a step, each
# switch between oneDNN's OpenMP team and XLA's thread pool costs (one spins while the other
# starts): ResNet-20's eval step took 39 ms with two passes on XLA that were 5-16 % faster
# alone, and 31-33 ms with every pass on oneDNN.
XLA_MARGIN = 1.25


# Another of oneDNN's kernels (or the gemm weight gradient) must beat oneDNN's first choice by
# this factor to be taken. Timings a few percent apart rank differently from one run to the
# next: on a Zen 4 EPYC the tuner took oneDNN's second kernel for ResNet-20's 8x8x64 input
# gradient at 2.43 ms against 2.48, and in the step the pass then ran 2.80 against 2.30.
ONEDNN_MARGIN = 1.1


def pick(timings: dict[str, float]) -> str:
    """The implementation to run: oneDNN's first choice ("onednn"), unless another of the
    kernels on oneDNN's OpenMP threads ("onednn:N", "gemm") beats it by `ONEDNN_MARGIN`; and
    "xla" if its time beats that one's by `XLA_MARGIN`."""
    fastest = min((c for c in timings if c != "xla"), key=timings.__getitem__)
    best = fastest if timings[fastest] * ONEDNN_MARGIN < timings["onednn"] else "onednn"
    return "xla" if timings["xla"] * XLA_MARGIN < timings[best] else best


def choose(pass_name: str, x_shape, kernel_shape, spec: ConvSpec, dtype=jnp.float32) -> str:
    """The implementation ("onednn", "onednn:N", "gemm" or "xla") of one pass of this
    convolution in `dtype` (see the module docstring)."""
    key = shape_key(x_shape, kernel_shape, spec, dtype)
    with _lock:
        made = _made.get(key, {}).get(pass_name)
    if made is not None:
        return made
    timings = None
    if os.environ.get("JAXDL_CONV_TUNING", "1") == "0":
        impl = "onednn"
    else:
        impl = cached_choices().get(key, {}).get(pass_name)
        if not valid(impl):
            with jax.ensure_compile_time_eval():  # we may be inside a trace: run, don't stage
                timings = time_pass(pass_name, x_shape, kernel_shape, spec, dtype=dtype)
            impl = pick(timings)
            _write_cache(key, pass_name, impl, timings)
    with _lock:
        impl = _made.setdefault(key, {}).setdefault(pass_name, impl)
        _changes[0] += 1
    if timings is not None:
        ms = ", ".join(f"{name} {value:.2f}" for name, value in timings.items())
        print(f"jaxdl: convolution {key} {pass_name} on {impl} (timed, ms: {ms})",
              file=sys.stderr)  # fmt: skip
    return impl


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def tuned_conv(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """The convolution f32[N, H, W, C] -> f32[N, H', W', F] (or bf16 -> bf16) with each pass
    on the implementation `choose` picks for it; a pass is chosen when it is first traced (so
    an evaluation step times no gradient)."""
    return _tuned_forward(x, kernel, spec)


def _tuned_forward(x, kernel, spec):
    impl = choose("forward", x.shape, kernel.shape, spec, x.dtype)
    return run_pass("forward", impl, spec, x, kernel)


def _tuned_fwd(x, kernel, spec):
    return _tuned_forward(x, kernel, spec), (x, kernel)


def _tuned_bwd(spec, residuals, dy):
    x, kernel = residuals
    data = choose("backward_data", x.shape, kernel.shape, spec, x.dtype)
    weights = choose("backward_weights", x.shape, kernel.shape, spec, x.dtype)
    return (
        run_pass("backward_data", data, spec, dy, kernel, x.shape),
        run_pass("backward_weights", weights, spec, x, dy, kernel.shape),
    )


tuned_conv.defvjp(_tuned_fwd, _tuned_bwd)


# The "auto" layers' convolution on CPU: each pass on the fastest of oneDNN's kernels and XLA's
# for its shape (`choose`); on XLA's path (`fast_cpu`) where oneDNN does not cover the call.
conv_general_dilated = onednn.covering(tuned_conv)

"""Which convolution implementation jaxdl runs here, and why.

    python -m jaxdl.ops.onednn

Prints the JAX backend, whether the oneDNN kernels loaded (or why not), oneDNN's version, the
instruction set it dispatches to and the kernel it picks for a ResNet-20 convolution, what
`--layers auto` means on this machine for float32 and bfloat16 convolutions and BatchNorm,
where the per-shape choices are cached, and how host memory is managed (`jaxdl.host_memory`).
"""

from __future__ import annotations

import os

import jaxdl  # noqa: F401  (jaxdl's XLA flags, before JAX starts)


def main() -> None:
    import jax
    import jax.numpy as jnp

    from jaxdl import host_memory
    from jaxdl.nn.conv import conv_function, fused_batch_norm
    from jaxdl.ops import fast_cpu, onednn
    from jaxdl.ops.onednn import tuning

    status = onednn.status()
    print(
        f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), jax {jax.__version__}"
    )
    print(f"CPU: {tuning.cpu_identity()}, {os.cpu_count()} cores")
    print(f"oneDNN: {status.line()}")
    if status.available:
        spec = onednn.ConvSpec((1, 1), (1, 1, 1, 1), (1, 1), 1)
        for pass_name in onednn.PASSES:
            impl = onednn.implementation(pass_name, (128, 32, 32, 16), (3, 3, 16, 16), spec)
            print(f"  ResNet-20's 32x32x16 -> 16 3x3 {pass_name}: {impl}")
        threads = os.environ.get("OMP_NUM_THREADS", f"{os.cpu_count()} (all cores)")
        policy = os.environ.get("OMP_WAIT_POLICY", "default")
        print(f"  OpenMP threads: {threads}; wait policy {policy}")
    auto = conv_function("auto", jnp.float32)
    if auto is tuning.conv_general_dilated:
        meaning = (
            "each convolution pass on the fastest of oneDNN's kernels and XLA's, timed once "
            "per shape"
        )
    elif auto is fast_cpu.conv_general_dilated:
        meaning = "XLA's convolutions, written for XLA:CPU (jaxdl.ops.fast_cpu)"
    else:
        meaning = "flax's plain layers on XLA"
    print(f"--layers auto, float32: {meaning}")
    if fused_batch_norm("auto", jnp.float32):
        norm = "jaxdl's fused kernels (BatchNorm + residual add + ReLU, batch_norm.cc)"
    else:
        norm = "XLA (jaxdl.ops.fast_cpu.batch_norm_train)"
    print(f"--layers auto, float32, training BatchNorm: {norm}")
    if conv_function("auto", jnp.bfloat16) is tuning.conv_general_dilated:
        bf16 = (
            "oneDNN's bfloat16 kernels (this CPU has bfloat16 instructions), tuned as above; "
            "training BatchNorm on the fused kernels"
        )
    else:
        bf16 = "flax's plain layers on XLA (no bfloat16 instructions for oneDNN here)"
    print(f"--layers auto, bfloat16: {bf16}")
    if status.available:
        shapes = len(tuning.cached_choices())
        print(f"per-shape choices: {tuning.cache_file()} ({shapes} shapes for this machine)")
    print(f"host memory: {host_memory.describe()}")


if __name__ == "__main__":
    main()

"""BatchNorm's per-channel sums on XLA:CPU: jaxdl's wide-row sums against the former dots.

`python -m benchmarks.channel_sums` times, for ResNet activation shapes at batch 128, the sum
and the sum of squares of one f32[B, H, W, C] activation two ways, alternately in one process:

* former: ones[M] @ m and diag(mᵀm) (ones @ (m * m) above 64 channels), m = x as [M, C];
* wide (`jaxdl.ops.fast_cpu._channel_sum`): m viewed as [M / k, k * C] rows, ones @ rows, then
  the k partial sums added.

`--step` also compiles the ResNet-20 train step (fast layers, batch 128) with each and times
the two steps alternately. Median and min–max over the repeats; nothing else should run.
"""

from __future__ import annotations

import argparse
import statistics
import time

SHAPES = [(128, 32, 32, 16), (128, 16, 16, 32), (128, 8, 8, 64), (128, 16, 16, 128),
          (128, 8, 8, 256), (128, 4, 4, 512)]  # fmt: skip


def former_channel_sum(m):
    import jax.numpy as jnp

    return jnp.ones((m.shape[0],), m.dtype) @ m


def former_channel_dot(a, b):
    import jax.numpy as jnp

    if a.shape[1] <= 64:
        return jnp.diagonal(a.T @ b)
    return former_channel_sum(a * b)


def _sums(channel_sum, channel_dot):
    def f(x):
        m = x.reshape(-1, x.shape[-1])
        return channel_sum(m), channel_dot(m, m)

    return f


def _time_ms(fn, *args, calls: int) -> float:
    import jax

    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls * 1e3


def compare_sums(repeats: int) -> None:
    import jax

    from jaxdl.ops import fast_cpu

    ways = {
        "former": jax.jit(_sums(former_channel_sum, former_channel_dot)),
        "wide": jax.jit(_sums(fast_cpu._channel_sum, fast_cpu._channel_dot)),
    }
    for shape in SHAPES:
        x = jax.random.normal(jax.random.PRNGKey(0), shape) + 1.0
        for fn in ways.values():
            jax.block_until_ready(fn(x))
        times = {name: [] for name in ways}
        for _ in range(repeats):
            for name, fn in ways.items():
                times[name].append(_time_ms(fn, x, calls=10))
        cells = [
            f"{name} {statistics.median(t):.2f} ms ({min(t):.2f}–{max(t):.2f})"
            for name, t in times.items()
        ]
        print(f"{'x'.join(map(str, shape))}: " + ", ".join(cells), flush=True)


def compare_steps(repeats: int) -> None:
    from benchmarks.step_throughput import _compile
    from jaxdl.ops import fast_cpu

    current = (fast_cpu._channel_sum, fast_cpu._channel_dot)
    runs = {}
    try:
        fast_cpu._channel_sum, fast_cpu._channel_dot = former_channel_sum, former_channel_dot
        runs["former"] = _compile("resnet20", 128, "fast")
    finally:
        fast_cpu._channel_sum, fast_cpu._channel_dot = current
    runs["wide"] = _compile("resnet20", 128, "fast")
    rates = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name].append(run["time_train"](5))
    for name, r in rates.items():
        print(
            f"resnet20 train step, {name} sums: {statistics.median(r):.0f} img/s "
            f"({min(r):.0f}–{max(r):.0f}, {repeats} x 5 steps)"
        )
    ratio = statistics.median(rates["wide"]) / statistics.median(rates["former"])
    print(f"wide / former: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--step", action="store_true", help="also time the ResNet-20 step")
    args = parser.parse_args()
    import jaxdl  # noqa: F401  (sets jaxdl's XLA flags before JAX starts)

    compare_sums(args.repeats)
    if args.step:
        compare_steps(args.repeats)


if __name__ == "__main__":
    main()

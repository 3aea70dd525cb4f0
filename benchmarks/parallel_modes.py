"""ResNet-20 train-step time at global batch 128 in each parallel mode over 1, 2 and 8 devices.

    python -m benchmarks.parallel_modes [--modes single,sharded] [--counts 2,4,8]

Runs in one process with 8 fake CPU devices (set below, before JAX starts) and measures every
(mode, device count) pair alternately, round after round, so drift hits them alike. On a
2-core CPU the fake devices share the same cores: the table shows each mode's overhead, not a
speed-up.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import optax  # noqa: E402

import jaxdl  # noqa: E402,F401  (jaxdl's default XLA flags)
from jaxdl import models, parallel  # noqa: E402
from jaxdl.state import create_train_state  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--modes", default=",".join(parallel.MODES), help="comma-separated parallel modes"
    )
    parser.add_argument(
        "--counts", default="1,2,8", help="comma-separated device counts for pmap and sharded"
    )
    args = parser.parse_args()
    modes = args.modes.split(",")
    counts = tuple(int(c) for c in args.counts.split(","))
    if unknown := [m for m in modes if m not in parallel.MODES]:
        parser.error(
            f"unknown mode {unknown[0]!r} in --modes; choose from {', '.join(parallel.MODES)}."
        )
    if bad := [c for c in counts if not 1 <= c <= len(jax.devices())]:
        parser.error(
            f"--counts {bad[0]} is not between 1 and the {len(jax.devices())} devices here."
        )
    key = jax.random.PRNGKey(1)
    batch = {
        "image": jax.random.normal(key, (args.batch_size, 32, 32, 3)),
        "label": jax.random.randint(key, (args.batch_size,), 0, 10),
    }
    setups = {}
    for mode in modes:
        for count in (1,) if mode == "single" else counts:
            runner = parallel.create_runner(mode, jax.devices()[:count], l2_weight=5e-4)
            model = parallel.model_for_mode(models.create("resnet20"), mode)
            state = create_train_state(
                model, optax.sgd(0.1, 0.9, nesterov=True), jax.random.PRNGKey(0), (1, 32, 32, 3)
            )
            state = runner.put_state(state)
            start = time.perf_counter()
            state, metrics = runner.train(state, batch)
            jax.block_until_ready(metrics)
            setups[(mode, count)] = [runner, state, time.perf_counter() - start, []]
    for _ in range(args.rounds):
        for setup in setups.values():
            runner, state = setup[0], setup[1]
            start = time.perf_counter()
            for _ in range(args.steps):
                state, metrics = runner.train(state, batch)
            jax.block_until_ready((state, metrics))
            setup[1] = state
            setup[3].append((time.perf_counter() - start) / args.steps)
    print("| mode | devices | step time, ms: median (min–max) | img/s | first step (compile), s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (mode, count), (_, _, first, times) in setups.items():
        median = statistics.median(times)
        print(
            f"| {mode} | {count} | {1000 * median:.0f} ({1000 * min(times):.0f}–"
            f"{1000 * max(times):.0f}) | {args.batch_size / median:.0f} | {first:.1f} |"
        )


if __name__ == "__main__":
    main()

"""What recycling freed host memory (`jaxdl.host_memory`) is worth: a train step's time and its
page faults, with and without.

    python -m benchmarks.host_memory --model resnet20 --layers auto --rounds 3
    python -m benchmarks.host_memory --model airbench94 --batch_size 1024 --rounds 1 \
        --repeats 30 --steps 1 --trim_bytes 2147483647

Each setting runs in child processes of its own (`JAXDL_KEEP_HOST_MEMORY=1` / `0`, and with
`--trim_bytes N` also kept but given back past N free bytes, `JAXDL_HEAP_TRIM_BYTES`: glibc's
arena settings are fixed when a thread first allocates), in turn for `--rounds` rounds. A
child compiles the step, warms it up (3 steps), then times `--repeats` x `--steps` steps and
counts the minor page faults they took (`getrusage`). Prints the temporary buffer's size, the
median step time (min-max) and the faults per step of each setting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = """
import functools, json, resource, statistics, sys, time
import jaxdl, jax
from benchmarks.step_throughput import synthetic_state_and_batch
from jaxdl.step import train_step

model, layers, batch_size, repeats, steps = sys.argv[1:6]
state, batch = synthetic_state_and_batch(model, int(batch_size), layers)
step = jax.jit(functools.partial(train_step, l2_weight=5e-4), donate_argnums=0)
compiled = step.lower(state, batch).compile()
for _ in range(3):
    state, metrics = compiled(state, batch)
jax.block_until_ready(metrics)
times, before = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(int(repeats)):
    start = time.perf_counter()
    for _ in range(int(steps)):
        state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    times.append((time.perf_counter() - start) / int(steps) * 1e3)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / int(repeats) / int(steps)
temp = compiled.memory_analysis().temp_size_in_bytes
print(json.dumps({"times": times, "faults": faults, "temp_mb": temp / 2**20}))
"""


def run_child(setting: str, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAXDL_HEAP_TRIM_BYTES"}
    env["JAXDL_KEEP_HOST_MEMORY"] = "0" if setting == "off" else "1"
    if setting == "trimmed":
        env["JAXDL_HEAP_TRIM_BYTES"] = str(args.trim_bytes)
    cmd = [sys.executable, "-c", CHILD, args.model, args.layers, str(args.batch_size),
           str(args.repeats), str(args.steps)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--layers", default="auto")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--trim_bytes",
        type=int,
        default=0,
        help="also time the kept heap given back past this many free bytes (0: not timed)",
    )
    args = parser.parse_args()

    settings = ("kept", "trimmed", "off") if args.trim_bytes else ("kept", "off")
    results = {setting: [] for setting in settings}
    for _ in range(args.rounds):
        for setting in results:
            results[setting].append(run_child(setting, args))
    temp = results["kept"][0]["temp_mb"]
    print(f"{args.model} batch {args.batch_size}, layers {args.layers}: "
          f"{temp:.0f} MiB of temporaries a step; {args.rounds} rounds x {args.repeats} x "
          f"{args.steps} steps")  # fmt: skip
    labels = {
        "kept": "freed memory kept (default)",
        "trimmed": f"kept, trimmed past {args.trim_bytes:,} B",
        "off": "JAXDL_KEEP_HOST_MEMORY=0",
    }
    for setting in results:
        label = labels[setting]
        times = [t for child in results[setting] for t in child["times"]]
        faults = statistics.median(child["faults"] for child in results[setting])
        median = statistics.median(times)
        rate = args.batch_size * 1e3 / median
        print(f"  {label:30s} {median:6.1f} ms/step ({min(times):.1f}-{max(times):.1f}), "
              f"{rate:5.0f} img/s, {faults:,.0f} page faults a step")  # fmt: skip


if __name__ == "__main__":
    main()

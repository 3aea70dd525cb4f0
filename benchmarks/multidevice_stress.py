"""Runs the MNIST MLP on 8 fake CPU devices many times in a row, per parallel mode, and counts
how each run ended: a multi-device run must never abort at random (XLA:CPU's collectives
rendezvous kills the process when a device thread does not arrive in time).

    python -m benchmarks.multidevice_stress --runs 20 --modes pmap sharded

Prints one line per run (mode, exit code, seconds, the abort message if any) and a count per
mode; exits 1 when any run failed.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time

COMMAND = [sys.executable, "-m", "experiments.mnist_mlp", "--epochs", "1", "--batch_size", "128"]
COMMAND += ["--seed", "3", "--dropout", "0", "--quiet", "--no-plots"]


def run_once(mode: str, workdir: str, timeout: float) -> tuple[int, float, str]:
    """(exit code, seconds, the first line naming an abort or error) of one fresh run."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, "--xla_force_host_platform_device_count=8"])
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [*COMMAND, "--parallel", mode, "--workdir", workdir, "--restart"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        code, output = 124, "timed out"
    seconds = time.perf_counter() - start
    reason = ""
    if code:
        lines = [line for line in output.splitlines() if line.strip()]
        named = [line for line in lines if "arrived" in line or "rror" in line]
        reason = (named or lines or [""])[0][:200]
    return code, seconds, reason


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per mode")
    parser.add_argument("--modes", nargs="+", default=["pmap", "sharded"])
    parser.add_argument("--workdir", default="runs/multidevice_stress")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    args = parser.parse_args(argv)
    counts: dict[str, collections.Counter] = {}
    for mode in args.modes:
        counts[mode] = collections.Counter()
        for index in range(args.runs):
            code, seconds, reason = run_once(mode, f"{args.workdir}/{mode}", args.timeout)
            counts[mode][code] += 1
            print(
                f"{mode} run {index + 1}/{args.runs}: exit {code} in {seconds:.1f} s {reason}",
                flush=True,
            )
    for mode, counter in counts.items():
        ended = ", ".join(f"exit {code}: {count}" for code, count in sorted(counter.items()))
        print(f"{mode}: {args.runs} runs; {ended}")
    sys.exit(int(any(code for counter in counts.values() for code in counter)))


if __name__ == "__main__":
    main()

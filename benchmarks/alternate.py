"""Timing two or more variants of one step side by side in one process, in turn, so that drift
of the machine's speed falls on all of them alike (`batch_norm_step`, `lstm_step`,
`gan_step` use it)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def time_alternately(
    steps: dict[str, tuple[Callable[[Any], Any], Any]], rounds: int, repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Ms per step of each variant, one figure per round. `steps` maps a name to (step, carry):
    `step(carry) -> carry`, a compiled step and what it threads (state, and anything to block
    on). Each round runs every variant in turn: `warmup` untimed steps, then `repeats` timed
    ones, blocking on the carry before and after."""
    import jax

    carries = {name: carry for name, (_, carry) in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, (step, _) in steps.items():
            carry = carries[name]
            for _ in range(warmup):
                carry = step(carry)
            jax.block_until_ready(carry)
            start = time.perf_counter()
            for _ in range(repeats):
                carry = step(carry)
            jax.block_until_ready(carry)
            times[name].append((time.perf_counter() - start) / repeats * 1e3)
            carries[name] = carry
    return times


def report(times: dict[str, list[float]], items: int, unit: str) -> None:
    """Prints each variant's median (min-max) ms per step and `items` per step as `unit`/s."""
    width = max(len(name) for name in times)
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:{width}s} {median:7.1f} ms ({min(values):.1f}-{max(values):.1f}), "
              f"{items * 1e3 / median:7,.0f} {unit}/s")  # fmt: skip

"""How far the host may run ahead of the devices: `BoundedDispatch`.

JAX dispatches asynchronously: a loop of jitted steps returns at once and the host queues step
after step. On XLA:CPU with several devices (`--xla_force_host_platform_device_count`) an
unbounded queue can deadlock. The CPU client runs both the per-device parts of a multi-device
computation and the dispatch of later ones on one thread pool of max(cores, devices) threads;
a collective (the gradient all-reduce of `pmap` or of a sharded `jit`) needs every device's
part running at once; and dispatching a computation to a device that already has 32 in flight
(the client's `max_inflight_computations_per_device`) blocks its pool thread until one
finishes. With the host far enough ahead, a blocked dispatch can take the thread the last
participant of the running all-reduce needs: seven device threads wait in the all-reduce for
an eighth that never starts, and after 40 s the rendezvous kills the process ("only 7 of them
arrived"). Keeping at most a few steps in flight keeps every device far below 32, so no
dispatch ever blocks. On a single device, and on GPUs and TPUs, the bound costs nothing
measurable: a few queued steps already hide the host's dispatch time.
"""

from __future__ import annotations

import collections
from typing import Any

import jax

# Steps. A `pmap` step is up to seven computations on the first device (the batch's gather,
# its split, the step, one per metric read back), so two steps stay far below 32.
DEFAULT_DEPTH = 2


class BoundedDispatch:
    """Call it with each step's outputs (any tree of arrays); once more than `depth` are
    pending, it waits for the oldest, so the host is never more than `depth` steps ahead."""

    def __init__(self, depth: int = DEFAULT_DEPTH):
        if depth < 1:
            raise ValueError(f"dispatch depth must be at least 1, got {depth}.")
        self.depth = depth
        self._pending: collections.deque = collections.deque()

    def __call__(self, outputs: Any) -> Any:
        """Returns `outputs` unchanged, after waiting for the step `depth` calls ago."""
        self._pending.append(outputs)
        if len(self._pending) > self.depth:
            jax.block_until_ready(self._pending.popleft())
        return outputs

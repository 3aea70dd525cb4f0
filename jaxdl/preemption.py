"""Stopping a run cleanly when the scheduler or the user asks: SIGTERM (what schedulers send
before they evict a job) and SIGINT (Ctrl-C) make the loop checkpoint at the next step boundary
and end with `Preempted`, which the command turns into one line and the conventional exit code
(143 for SIGTERM, 130 for SIGINT); the same command then resumes exactly there.

One process: a Python signal handler records the signal and the loop asks `stop_requested()`
after every step. Several processes (`jax.distributed`): every process must stop at the same
step, or the one that stopped early would leave the others waiting in a collective. JAX's
preemption service does that agreement: its notifier catches SIGTERM in any process, tells the
others through the coordination service, and `multihost_utils.reached_preemption_sync_point`
turns true at the same step everywhere. A SIGINT there is handed to it as a SIGTERM (and still
reported as 130).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import jax
from jax.experimental import multihost_utils


class Preempted(Exception):
    """The run stopped at a step boundary on `signum` and wrote a checkpoint: `step`, the data
    position (`epoch`, `index` of the next batch) and the checkpoint's `directory`."""

    def __init__(self, signum: int, step: int, epoch: int, index: int, directory: str | None):
        self.signum, self.step, self.epoch, self.index = signum, step, epoch, index
        self.directory = directory
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step} (epoch {epoch}, batch "
            f"{index})"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's code for a signal: 143 SIGTERM, 130 SIGINT


class StopOnSignal:
    """While active (a context manager), SIGTERM and SIGINT request a stop instead of ending
    the process; the previous handlers come back on exit. A second SIGINT while a stop is
    pending ends the run at once (KeyboardInterrupt), as a user pressing Ctrl-C twice expects.
    Outside the main thread (no signal handlers there) it never requests a stop."""

    def __init__(self):
        self.signum: int | None = None
        self.multiprocess = jax.process_count() > 1
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            return self
        # several processes: SIGTERM stays with JAX's preemption notifier
        signums = (signal.SIGINT,) if self.multiprocess else (signal.SIGTERM, signal.SIGINT)
        for signum in signums:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum
        if self.multiprocess:
            signal.raise_signal(signal.SIGTERM)  # to the preemption notifier, which tells all

    def stop_requested(self, step: int) -> bool:
        """Whether to checkpoint and stop after global step `step` (called after every step;
        in a multi-process run it is true at the same step in every process)."""
        if self.multiprocess:
            if multihost_utils.reached_preemption_sync_point(step):
                self.signum = self.signum or signal.SIGTERM
                return True
            return False
        return self.signum is not None

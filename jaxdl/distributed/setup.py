"""Several cooperating processes, one training run: `jax.distributed` from the launcher's
environment.

`python -m jaxdl.distributed.launch --processes N -- python -m experiments.NAME ...` starts N
copies of a command with these variables set; `initialize_from_env()`, called by every
experiment before JAX starts its backend, turns them into `jax.distributed.initialize(...)`.
After it, `jax.devices()` lists every process's devices, `jax.local_devices()` this process's, and a
`jax.jit` on a mesh over all of them runs as one program whose collectives cross processes
(CPU: gloo over TCP on localhost; GPU/TPU: the accelerator's own).

Without the variables nothing happens: a plain single-process run.
"""

from __future__ import annotations

import os
import sys

import jax

from jaxdl.errors import ConfigError

COORDINATOR = "JAXDL_COORDINATOR"  # host:port of process 0's coordination service
NUM_PROCESSES = "JAXDL_NUM_PROCESSES"
PROCESS_ID = "JAXDL_PROCESS_ID"
CPU_DEVICES = "JAXDL_CPU_DEVICES"  # fake CPU devices per process (optional)


def initialize_from_env(timeout_seconds: int = 60) -> bool:
    """Joins the multi-process run described by the `JAXDL_*` variables; returns whether there
    is one. Must run before the first JAX computation (the backend reads the device count and
    the collectives implementation when it starts)."""
    count = os.environ.get(NUM_PROCESSES)
    if not count:
        return False
    try:
        num_processes, process_id = int(count), int(os.environ[PROCESS_ID])
        coordinator = os.environ[COORDINATOR]
    except (KeyError, ValueError) as error:
        raise ConfigError(
            f"incomplete multi-process environment ({error!r}); start the processes with "
            f"python -m jaxdl.distributed.launch --processes N -- COMMAND."
        ) from None
    if os.environ.get(CPU_DEVICES):
        jax.config.update("jax_num_cpu_devices", int(os.environ[CPU_DEVICES]))
    # CPU collectives across processes need an implementation; gloo ships with jaxlib.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_seconds,
    )
    return True


def is_main_process() -> bool:
    """Whether this process writes the run's files and logs (process 0; always, alone)."""
    return jax.process_index() == 0


def in_multiprocess_run() -> bool:
    return bool(os.environ.get(NUM_PROCESSES)) and jax.process_count() > 1


def exit_process(code: int) -> None:
    """Ends this process with `code`. In a multi-process run it exits at once (`os._exit`):
    a normal exit would wait in `jax.distributed`'s shutdown for peers that are themselves
    waiting for this process in a collective, and the launcher would never see the failure."""
    if in_multiprocess_run():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

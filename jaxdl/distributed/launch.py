"""Start one command as N cooperating JAX processes on this machine.

    python -m jaxdl.distributed.launch --processes 2 -- \
        python -m experiments.cifar_resnet --parallel sharded
    python -m jaxdl.distributed.launch --processes 2 --cpu_devices 2 -- \
        python -m experiments.mnist_mlp ...

Each process gets `JAXDL_COORDINATOR` (a free localhost port; process 0 serves it),
`JAXDL_NUM_PROCESSES`, `JAXDL_PROCESS_ID` and optionally `JAXDL_CPU_DEVICES`, which
`jaxdl.distributed.initialize_from_env` turns into `jax.distributed.initialize`. Process 0
writes the run's logs and files; the others print only their errors. The launcher waits for all
of them; when one fails it stops the rest and exits with the failed process's code, so no
process is left behind. A process that stopped for a signal (exit code 143 or 130: it
checkpointed, see `jaxdl.preemption`) is not a failure: the others stop at the same step, and
the launcher waits for them. SIGTERM or Ctrl-C to the launcher is handed to every process, which
then stop alike; the launcher exits 143 or 130. On many hosts, start one process per
host with the same variables (coordinator = the first host) instead.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from jaxdl.distributed import setup as distributed


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_env(process_id: int, processes: int, port: int, cpu_devices: int | None) -> dict:
    env = dict(os.environ)
    env.update(
        {
            distributed.COORDINATOR: f"127.0.0.1:{port}",
            distributed.NUM_PROCESSES: str(processes),
            distributed.PROCESS_ID: str(process_id),
        }
    )
    if cpu_devices:
        env[distributed.CPU_DEVICES] = str(cpu_devices)
    return env


# the codes of a run that checkpointed on SIGTERM / SIGINT (jaxdl.preemption): 143, 130
STOPPED_BY_SIGNAL = (128 + signal.SIGTERM, 128 + signal.SIGINT)
STOP_GRACE_SECONDS = 120.0  # time for the others to reach the agreed step and checkpoint


class _Terminated(Exception):
    """The launcher itself got SIGTERM."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated


def stop(procs: list[subprocess.Popen], grace_seconds: float = 10.0, send: bool = True) -> None:
    """SIGTERM to every process still running (unless `send` is false: they are stopping
    already), SIGKILL to those alive after the grace time."""
    for proc in procs:
        if send and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _die_with_parent() -> None:
    """In the child before it runs the command (Linux): SIGTERM when the launcher dies, even
    by SIGKILL, so no process outlives it."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the launcher's own handlers still stop the children
        pass


def _stopped_code(procs: list[subprocess.Popen], code: int) -> int:
    """`code` when every process stopped cleanly for a signal (or finished); else the code of
    the first that did not, named on stderr."""
    for index, proc in enumerate(procs):
        if proc.returncode not in (0, *STOPPED_BY_SIGNAL):
            print(
                f"jaxdl.distributed.launch: process {index} exited with code "
                f"{proc.returncode} while stopping",
                file=sys.stderr,
            )
            return proc.returncode
    return code


def launch(
    command: list[str], processes: int, cpu_devices: int | None = None, port: int | None = None
) -> int:
    """Runs `command` as `processes` cooperating processes; returns 0 when all succeed, else
    the exit code of the first that failed (the others are stopped)."""
    port = port or free_port()
    procs = [
        subprocess.Popen(
            command, env=process_env(i, processes, port, cpu_devices), preexec_fn=_die_with_parent
        )
        for i in range(processes)
    ]
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        while True:
            codes = [proc.poll() for proc in procs]
            failed = [(i, code) for i, code in enumerate(codes) if code not in (None, 0)]
            if failed and failed[0][1] in STOPPED_BY_SIGNAL:
                stop(procs, STOP_GRACE_SECONDS, send=False)
                return _stopped_code(procs, failed[0][1])
            if failed:
                index, code = failed[0]
                print(
                    f"jaxdl.distributed.launch: process {index} exited with code {code}; "
                    f"stopping the others",
                    file=sys.stderr,
                )
                stop(procs)
                return code
            if all(code == 0 for code in codes):
                return 0
            time.sleep(0.1)
    except KeyboardInterrupt:  # Ctrl-C reached every process of the terminal's group
        stop(procs, STOP_GRACE_SECONDS, send=False)
        return _stopped_code(procs, 130)
    except _Terminated:
        stop(procs, STOP_GRACE_SECONDS)
        return _stopped_code(procs, 143)
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="python -m jaxdl.distributed.launch [--processes N] [--cpu_devices D] -- COMMAND ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--processes", type=int, default=2, help="processes to start")
    parser.add_argument(
        "--cpu_devices", type=int, default=None, help="fake CPU devices per process (CPU only)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="coordinator port (default: a free one)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --, e.g. -- python -m experiments.mnist_mlp")
    if args.processes < 1:
        parser.error(f"--processes {args.processes} must be at least 1")
    sys.exit(launch(command, args.processes, args.cpu_devices, args.port))


if __name__ == "__main__":
    main()

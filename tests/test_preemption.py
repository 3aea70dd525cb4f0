"""Preemption: SIGTERM and Ctrl-C stop a run at a step boundary with a checkpoint, one line and
the conventional exit code, and the same command resumes to the parameters an uninterrupted
run ends with, bit for bit; time-based checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdl.checkpoint import Checkpointer
from jaxdl.loop import Hook, fit
from jaxdl.preemption import Preempted
from tests.conftest import REPO
from tests.test_loop import add_step, counter, fit_counter, ones_batches
from tests.test_reliability import final_params


class SignalAt(Hook):
    """Sends `signum` to this process after global step `step`."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def after_step(self, state, step):
        if step == self.step:
            signal.raise_signal(self.signum)
        return state


def checkpointer(path) -> Checkpointer:
    return Checkpointer(str(path), keep=10)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_epoch_checkpoints_there_and_resume_is_exact(tmp_path, signum, code):
    reference = fit_counter(5, 3).state
    saver = checkpointer(tmp_path)
    before = signal.getsignal(signum)  # SIG_IGN for SIGINT in a shell's background job
    with pytest.raises(Preempted) as stopped:
        fit_counter(5, 3, checkpointer=saver, hooks=[SignalAt(7, signum)])
    assert stopped.value.exit_code == code
    assert (stopped.value.step, stopped.value.epoch, stopped.value.index) == (7, 2, 2)
    assert stopped.value.directory == os.path.join(saver.directory, "latest", "7")
    assert f"stopped by {signal.Signals(signum).name} at step 7 (epoch 2, batch 2)" in str(
        stopped.value
    )
    # the handler is gone after the run: the process's own handling of the signal is back
    assert signal.getsignal(signum) == before
    saver.close()
    step, meta, total = latest_checkpoint(tmp_path)
    assert step == 7 and (meta["epoch"], meta["index"]) == (2, 2)
    start = counter().replace(step=jnp.asarray(step, jnp.int32), total=jnp.asarray(total))
    resumed = fit(
        start,
        train_step=add_step,
        batches=ones_batches(5),
        steps_per_epoch=5,
        epochs=3,
        start_epoch=2,
        start_index=2,
        quiet=True,
    ).state
    assert int(resumed.step) == int(reference.step) == 15
    np.testing.assert_array_equal(resumed.total, reference.total)


def latest_checkpoint(directory):
    """(step, meta, total) of the newest checkpoint of a `Counter` run, and all steps saved."""
    manager = ocp.CheckpointManager(os.path.join(directory, "latest"))
    step = manager.latest_step()
    restored = manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
    )
    return step, restored["meta"], restored["state"]["total"]


def saved_steps(directory):
    return ocp.CheckpointManager(os.path.join(directory, "latest")).all_steps()


def test_a_signal_on_an_epochs_last_step_stops_after_its_record(tmp_path):
    saver = checkpointer(tmp_path)
    with pytest.raises(Preempted) as stopped:
        fit_counter(5, 3, checkpointer=saver, hooks=[SignalAt(10, signal.SIGTERM)])
    saver.close()
    assert (stopped.value.step, stopped.value.epoch, stopped.value.index) == (10, 3, 0)
    assert sorted(saved_steps(tmp_path)) == [5, 10]


def test_time_based_checkpoints(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    class Tick(Hook):
        def after_step(self, state, step):
            clock[0] += 20.0  # each step takes 20 s of wall time
            return state

    saver = checkpointer(tmp_path)
    fit_counter(5, 1, checkpointer=saver, hooks=[Tick()], checkpoint_every_minutes=1.0)
    saver.close()
    # the third step passes a minute; the epoch end (step 5) saves as always
    assert sorted(saved_steps(tmp_path)) == [3, 5]


def tiny_cli(workdir, *extra) -> subprocess.Popen:
    argv = [sys.executable, "-m", "experiments.mnist_mlp", "--train_limit", "20000"]
    argv += ["--test_limit", "200", "--epochs", "2", "--batch_size", "50", "--widths", "256"]
    argv += ["--quiet", "--no-plots", "--workdir", str(workdir), *extra]
    return subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def signal_once_training(process: subprocess.Popen, signum: int, delay: float = 0.5) -> str:
    """Sends `signum` `delay` s after the train step compiled; returns the whole output."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("compiled the train step"):
            time.sleep(delay)
            process.send_signal(signum)
            break
    lines.extend(process.stdout)
    process.wait(timeout=120)
    return "".join(lines)


@pytest.mark.slow
def test_cli_sigterm_and_ctrl_c_then_resume_bit_identical(tmp_path):
    reference = tmp_path / "uninterrupted"
    assert tiny_cli(reference).wait(timeout=180) == 0
    ref_step, ref_params = final_params(reference)
    for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        workdir = tmp_path / signal.Signals(signum).name
        process = tiny_cli(workdir)
        output = signal_once_training(process, signum)
        assert process.returncode == code, output
        (line,) = [line for line in output.splitlines() if line.startswith("stopped by")]
        assert f"stopped by {signal.Signals(signum).name} at step " in line
        assert os.path.join(str(workdir), "checkpoints", "latest") in line
        assert "run the same command again to resume: " in line and "mnist_mlp" in line
        step, _ = final_params(workdir)
        assert 0 < step < ref_step, output  # stopped during training, not after it
        resumed = tiny_cli(workdir)
        output = resumed.communicate(timeout=180)[0]
        assert resumed.returncode == 0, output
        assert f"resuming from {workdir}" in output
        step, params = final_params(workdir)
        assert step == ref_step
        jax.tree.map(np.testing.assert_array_equal, params, ref_params)

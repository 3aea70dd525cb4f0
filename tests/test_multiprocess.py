"""Several processes, one run: `jaxdl.distributed.launch` + `jax.distributed` on localhost (CPU
collectives through gloo). Every test starts its own processes and leaves none behind."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO

LAUNCH = [sys.executable, "-m", "jaxdl.distributed.launch"]
WORKER = [sys.executable, "-m", "tests.multiprocess_worker"]


def subprocess_env() -> dict:
    """This environment without the test run's 8 fake devices (each process chooses its
    own count) and without a parent multi-process run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXDL_")}
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "device_count" not in f)
    return env


def run(command: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_two_processes_of_two_devices_match_one_process(tmp_path):
    single = run([*WORKER, str(tmp_path / "single.npz"), "--parallel", "single", "--steps", "4"])
    assert single.returncode == 0, single.stderr[-2000:]
    multi = run(
        [
            *LAUNCH,
            "--processes",
            "2",
            "--cpu_devices",
            "2",
            "--",
            *WORKER,
            str(tmp_path / "multi.npz"),
            "--steps",
            "4",
        ]
    )
    assert multi.returncode == 0, multi.stderr[-2000:]
    one, two = np.load(tmp_path / "single.npz"), np.load(tmp_path / "multi.npz")
    assert (int(one["processes"]), int(one["devices"])) == (1, 1)
    assert (int(two["processes"]), int(two["devices"])) == (2, 4)
    arrays = [k for k in one.files if k not in ("processes", "devices")]
    assert any(k.startswith("batch_stats/") for k in arrays)  # BatchNorm statistics compared too
    assert sorted(arrays) == sorted(k for k in two.files if k not in ("processes", "devices"))
    for key in arrays:
        difference = np.max(np.abs(one[key] - two[key]))
        assert difference < 1e-5, f"{key}: {difference:.2e}"
    assert not np.allclose(one["losses"][0], one["losses"][-1])  # the steps did train


def run_mnist_in_two_processes(workdir, *options: str) -> subprocess.CompletedProcess:
    """`experiments.mnist_mlp` (sharded, 1,000 training images, width 64) launched as two
    processes, with `options` added."""
    experiment = [sys.executable, "-m", "experiments.mnist_mlp", "--parallel", "sharded"]
    small = ["--train_limit", "1000", "--test_limit", "500", "--widths", "64"]
    quiet = ["--quiet", "--no-plots", "--workdir", str(workdir)]
    return run([*LAUNCH, "--processes", "2", "--", *experiment, *small, *options, *quiet])


@pytest.mark.slow
def test_experiment_runs_as_two_processes(tmp_path, data_dir):
    workdir = tmp_path / "run"
    result = run_mnist_in_two_processes(workdir, "--epochs", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "over 2 devices in 2 processes" in result.stdout
    assert result.stdout.count("test accuracy:") == 1  # process 0 alone reports
    results = json.loads((workdir / "results.json").read_text())
    assert results["devices"] == 2 and results["test_accuracy"] > 0.2  # chance: 0.1
    assert os.listdir(workdir / "checkpoints" / "latest")
    # the checkpoint process 0 wrote resumes in a plain one-process run
    resumed = run(
        [
            sys.executable,
            "-m",
            "experiments.mnist_mlp",
            "--train_limit",
            "1000",
            "--test_limit",
            "500",
            "--epochs",
            "2",
            "--widths",
            "64",
            "--quiet",
            "--no-plots",
            "--workdir",
            str(workdir),
        ]
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout and "epoch   2/2" in resumed.stdout


@pytest.mark.slow
def test_budgeted_experiment_plans_alike_in_two_processes(tmp_path, data_dir):
    # Each process times its own steps; process 0's epoch counts (the first plan and the
    # re-plan) are broadcast, or the processes' collectives would fall out of step.
    workdir = tmp_path / "run"
    result = run_mnist_in_two_processes(workdir, "--epochs", "8", "--time_budget_minutes", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    # a 5-minute budget holds the cap of 8 epochs; the re-plan after epoch 2 keeps it
    assert ": 8 epochs (the --epochs cap)" in result.stdout
    assert "time budget: epochs 1-2 took" in result.stdout and "8 epochs in all" in result.stdout
    results = json.loads((workdir / "results.json").read_text())
    assert results["epochs_run"] == results["epochs_planned"] == 8


def test_pmap_across_processes_is_refused(tmp_path):
    result = run(
        [*LAUNCH, "--processes", "2", "--", *WORKER, str(tmp_path / "x.npz"), "--parallel", "pmap"]
    )
    assert result.returncode != 0
    assert "use --parallel sharded" in result.stderr


def test_launcher_stops_the_others_when_one_fails(tmp_path):
    pid_file = tmp_path / "pid"
    script = (
        "import os, sys, time\n"
        "if os.environ['JAXDL_PROCESS_ID'] == '1':\n"
        "    time.sleep(0.5); sys.exit(3)\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(120)\n"
    )
    start = time.monotonic()
    result = run([*LAUNCH, "--processes", "2", "--", sys.executable, "-c", script], timeout=60)
    assert result.returncode == 3
    assert time.monotonic() - start < 30
    assert "process 1 exited with code 3" in result.stderr
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # process 0 was stopped, not left sleeping


def test_launcher_without_a_command_says_so():
    result = run([*LAUNCH, "--processes", "2"])
    assert result.returncode == 2
    assert "give the command to run after --" in result.stderr


def launched_mnist(workdir) -> subprocess.Popen:
    """The sharded MNIST MLP as two launched processes, long enough to be stopped mid-run."""
    experiment = [sys.executable, "-m", "experiments.mnist_mlp", "--parallel", "sharded"]
    options = ["--train_limit", "15000", "--test_limit", "500", "--widths", "256"]
    options += ["--epochs", "2", "--batch_size", "50", "--quiet", "--no-plots"]
    return subprocess.Popen(
        [*LAUNCH, "--processes", "2", "--", *experiment, *options, "--workdir", str(workdir)],
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def process_pid(launcher: subprocess.Popen, process_id: int) -> int:
    """The pid of the launched process with JAXDL_PROCESS_ID == `process_id`."""
    with open(f"/proc/{launcher.pid}/task/{launcher.pid}/children") as f:
        children = [int(pid) for pid in f.read().split()]
    for pid in children:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if f"JAXDL_PROCESS_ID={process_id}".encode() in f.read().split(b"\0"):
                return pid
    raise AssertionError(f"no launched process {process_id} among {children}")


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step_and_resumes_exactly(tmp_path, data_dir):
    from tests.test_reliability import final_params

    reference = tmp_path / "uninterrupted"
    finished = launched_mnist(reference)
    output = finished.communicate(timeout=300)[0]
    assert finished.returncode == 0, output[-3000:]
    workdir = tmp_path / "stopped"
    launcher = launched_mnist(workdir)
    lines = []
    for line in launcher.stdout:
        lines.append(line)
        if line.startswith("compiled the train step"):
            time.sleep(1.0)
            os.kill(process_pid(launcher, 1), signal.SIGTERM)
            break
    lines.extend(launcher.stdout)
    launcher.wait(timeout=300)
    output = "".join(lines)
    assert launcher.returncode == 143, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("stopped by SIGTERM")]
    step = int(line.split(" at step ")[1].split()[0])
    ref_step, ref_params = final_params(reference)
    assert 0 < step < ref_step
    assert final_params(workdir)[0] == step  # one checkpoint, at the step both stopped at
    resumed = launched_mnist(workdir)
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert f"resuming from {workdir}" in output
    last, params = final_params(workdir)
    assert last == ref_step
    import jax

    jax.tree.map(np.testing.assert_array_equal, params, ref_params)

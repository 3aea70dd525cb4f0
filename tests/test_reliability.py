"""Reliability: bad input stops early with one sentence, saved files hold no code, runs are
deterministic, and a run killed with SIGKILL resumes to bit-identical parameters."""

import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import mnist_mlp
from jaxdl.build import initial_state
from jaxdl.checkpoint import Checkpointer
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError
from jaxdl.tasks.classification import check_labels
from jaxdl.train import train_and_evaluate
from tests.conftest import REPO

QUICK = ["--train_limit", "300", "--test_limit", "100", "--epochs", "1", "--quiet"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet21"], "unknown model 'resnet21'; known models: "),
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
        (["--model", "alexnet"], "mnist images of 28x28x1 do not fit model 'alexnet'"),
        (["--batch_size", "500"], "batch size 500 is larger than the 270 training examples"),
        (
            ["--parallel", "sharded", "--batch_size", "100"],
            "batch size 100 does not divide by the 8 devices",
        ),
        (["--lr", "0"], "learning rate must be positive, got --lr 0.0"),
        (["--lr", "-0.1"], "learning rate must be positive"),
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--batch_size", "-4"], "--batch_size must be a positive integer, got -4"),
        (["--workdir", "/proc/jaxdl-cannot-write-here"], "cannot write to the run directory"),
        (
            ["--model", "softmax_regression", "--widths", "32"],
            "--widths shapes the MLP only, not model 'softmax_regression'; drop it or use",
        ),
    ],
)
def test_bad_input_is_one_sentence(tmp_path, data_dir, args, message):
    argv = [*QUICK, "--workdir", str(tmp_path / "run"), *args]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as error:
        mnist_mlp.main(argv)
    assert "\n" not in str(error.value)


def test_labels_outside_the_classes_are_refused():
    check_labels("train", np.array([0, 9]), 10)
    with pytest.raises(ConfigError, match=r"train labels must lie in \[0, 10\), found 0..10"):
        check_labels("train", np.array([0, 10]), 10)
    with pytest.raises(ConfigError, match="found -1..3"):
        check_labels("test", np.array([-1, 3]), 10)


def test_cli_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.mnist_mlp", *QUICK, "--lr", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == "error: learning rate must be positive, got --lr 0.0.\n"


TINY = TrainConfig(
    dataset="mnist",
    model="mlp",
    model_options={"widths": (32,), "dropout_rate": 0.2},
    epochs=2,
    batch_size=50,
    train_limit=550,
    test_limit=200,
    quiet=True,
    checkpoint_every_steps=2,
    keep_checkpoints=100,
    plots=False,
)
TIMING = {"images_per_second", "epoch_seconds", "val_seconds"}


def final_params(workdir):
    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints", "latest"))
    restored = manager.restore(
        manager.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
    return manager.latest_step(), jax.device_get(restored["state"]["params"])


def records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_dir):
    workdir = str(tmp_path_factory.mktemp("reference"))
    train_and_evaluate(dataclasses.replace(TINY, workdir=workdir))
    return workdir


def test_same_seed_same_run_other_seed_other_run(reference_run, tmp_path):
    again = str(tmp_path / "again")
    train_and_evaluate(dataclasses.replace(TINY, workdir=again))
    assert records(again) == records(reference_run)
    jax.tree.map(np.testing.assert_array_equal, final_params(again), final_params(reference_run))
    other = str(tmp_path / "other")
    train_and_evaluate(dataclasses.replace(TINY, workdir=other, seed=1))
    assert records(other) != records(reference_run)


def test_planted_pickle_is_never_loaded(reference_run, tmp_path):
    import shutil

    workdir = str(tmp_path / "planted")
    shutil.copytree(reference_run, workdir)
    marker = tmp_path / "code-ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    latest = os.path.join(workdir, "checkpoints", "latest")
    newest = max(int(d) for d in os.listdir(latest) if d.isdigit())
    for name in ("state/evil.pkl", "evil.pickle", "meta/checkpoint.pkl"):
        path = os.path.join(latest, str(newest), name)
        with open(path, "wb") as f:
            pickle.dump(Exploit(), f)
    config = dataclasses.replace(TINY, workdir=workdir)
    state, _, _ = initial_state(config, 10, (28, 28, 1), steps_per_epoch=9)
    restored, meta = Checkpointer(os.path.join(workdir, "checkpoints")).restore_latest(state, "mlp")
    assert int(restored.step) == newest and meta["epoch"] == 3
    assert not marker.exists()


def run_tiny_cli(workdir, **kwargs):
    argv = [
        sys.executable,
        "-m",
        "experiments.mnist_mlp",
        "--train_limit",
        "550",
        "--test_limit",
        "200",
        "--epochs",
        "2",
        "--batch_size",
        "50",
        "--widths",
        "32",
        "--quiet",
        "--checkpoint_every_steps",
        "2",
        "--keep_checkpoints",
        "100",
        "--no-plots",
        "--workdir",
        str(workdir),
    ]
    return subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )


def checkpoint_steps(workdir):
    latest = os.path.join(workdir, "checkpoints", "latest")
    return (
        sorted(int(d) for d in os.listdir(latest) if d.isdigit()) if os.path.isdir(latest) else []
    )


@pytest.mark.slow
def test_sigkill_at_several_moments_then_resume_is_bit_identical(tmp_path):
    reference = tmp_path / "uninterrupted"
    assert run_tiny_cli(reference).wait(timeout=120) == 0
    workdir = tmp_path / "killed"
    killed_at = []
    # Kill when the first, then the fourth checkpoint has appeared: each time the
    # process is in the middle of training or of writing the next checkpoint.
    for wanted in (1, 4):
        process = run_tiny_cli(workdir)
        deadline = time.time() + 90
        while len(checkpoint_steps(workdir)) < wanted and process.poll() is None:
            assert time.time() < deadline, "the run made no checkpoint"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at.append(checkpoint_steps(workdir)[-1] if checkpoint_steps(workdir) else 0)
    # Then once while a checkpoint is being written: Orbax writes into a temporary folder
    # and renames it on commit, so the kill leaves that folder half-written.
    process = run_tiny_cli(workdir)
    latest = os.path.join(workdir, "checkpoints", "latest")
    caught = False
    while process.poll() is None and not caught:
        caught = any(
            "tmp" in name for name in (os.listdir(latest) if os.path.isdir(latest) else [])
        )
    process.send_signal(signal.SIGKILL)
    process.wait()
    print("killed during a checkpoint write:", caught)
    finished = run_tiny_cli(workdir)
    output = finished.communicate(timeout=120)[0]
    assert finished.returncode == 0, output
    assert "resuming from" in output
    assert killed_at[0] < killed_at[-1] < 18
    ref_step, ref_params = final_params(reference)
    step, params = final_params(workdir)
    assert step == ref_step == 18
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)


def test_config_repeats_a_run_and_options_beside_it_override(tmp_path, data_dir, capsys):
    quick = ["--train_limit", "550", "--test_limit", "100", "--batch_size", "50", "--quiet"]
    original = tmp_path / "original"
    first = [*quick, "--epochs", "2", "--widths", "32", "--dropout", "0.3", "--seed", "4"]
    mnist_mlp.main([*first, "--lr", "0.003", "--no-plots", "--workdir", str(original)])
    again = tmp_path / "again"
    mnist_mlp.main(["--config", str(original), "--workdir", str(again)])
    assert "configuration of " in capsys.readouterr().out
    assert records(again) == records(original)
    with open(again / "config.json") as f:
        repeated = json.load(f)
    options = {"widths": [32], "act": "relu", "weight_init": "he", "dropout_rate": 0.3}
    assert repeated["model_options"] == options
    assert (repeated["lr"], repeated["seed"], repeated["plots"]) == (0.003, 4, False)
    # an option beside --config wins; without --workdir the repeat gets its own directory
    mnist_mlp.main(["--config", str(original / "config.json"), "--epochs", "1"])
    with open(f"{original}-rerun/config.json") as f:
        assert (json.load(f)["epochs"]) == 1
    with pytest.raises(ConfigError, match="--config .*nowhere: no such run directory"):
        mnist_mlp.main(["--config", str(tmp_path / "nowhere")])


def test_a_finished_run_run_again_tests_its_best_epoch(tmp_path, data_dir):
    """With early stopping the test figure is the best validation epoch's; running the
    finished run again (it resumes, finds nothing left to train and tests) gives the same."""
    argv = [
        *("--train_limit", "600", "--test_limit", "200", "--epochs", "4", "--quiet"),
        *("--lr", "0.5", "--early_stopping_patience", "10", "--seed", "1"),
        *("--workdir", str(tmp_path / "run"), "--data_dir", data_dir),
    ]
    first = mnist_mlp.main(argv)
    assert first["best_epoch"] < first["epochs_run"] == 4, "the best epoch must not be the last"
    again = mnist_mlp.main(argv)
    assert again["best_epoch"] == first["best_epoch"]
    assert again["test_accuracy"] == first["test_accuracy"]

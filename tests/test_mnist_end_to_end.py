"""End to end on real MNIST: a tiny run learns, and bad input ends in one line."""

import json
import os
import subprocess
import sys

import pytest

from experiments import mnist_mlp
from tests.conftest import REPO


def test_tiny_mlp_learns_real_mnist(tmp_path, data_dir, capsys):
    workdir = tmp_path / "run"
    results = mnist_mlp.main(
        [
            "--train_limit",
            "600",
            "--test_limit",
            "500",
            "--epochs",
            "3",
            "--batch_size",
            "32",
            "--widths",
            "64",
            "--quiet",
            "--workdir",
            str(workdir),
        ]
    )
    assert results["test_count"] == 500
    assert results["test_accuracy"] > 0.6  # chance is 0.1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("test accuracy: ")
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert json.loads((workdir / "config.json").read_text())["model_options"]["widths"] == [64]


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "experiments.mnist_mlp", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_unknown_dataset_exits_with_one_line():
    result = run_cli("--dataset", "nosuch")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: unknown dataset 'nosuch'")
    assert "Traceback" not in result.stderr


def test_empty_data_dir_exits_with_one_line(tmp_path):
    result = run_cli(env={"TFDS_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no prepared 'mnist' data under" in result.stderr


def test_help_lists_every_shared_option_with_defaults():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in (
        "--dataset",
        "--data_dir",
        "--model",
        "--epochs",
        "--batch_size",
        "--lr",
        "--optimizer",
        "--schedule",
        "--weight_decay",
        "--seed",
        "--workdir",
    ):
        assert option in result.stdout
    assert "(default: 20)" in result.stdout


@pytest.mark.slow
def test_diverging_run_stops_with_one_line(tmp_path):
    result = run_cli(
        "--train_limit",
        "2000",
        "--test_limit",
        "100",
        "--epochs",
        "2",
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
        "--schedule",
        "constant",
        "--max_bad_steps",
        "10",
        "--quiet",
        "--workdir",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "consecutive steps had a non-finite loss or gradient" in result.stderr
    assert os.listdir(tmp_path / "checkpoints" / "latest") == []  # nothing bad was saved

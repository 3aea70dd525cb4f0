"""`experiments.sequential_mnist` end to end on a slice of real MNIST: it learns, measures the
input gradient per row at initialisation and after training, and compares runs."""

from __future__ import annotations

import json

import pytest

from experiments import sequential_mnist
from jaxdl.errors import ConfigError


def test_tiny_rnn_run_learns_and_measures_input_gradients(data_dir, tmp_path, capsys):
    common = ["--epochs", "2", "--train_limit", "2000", "--test_limit", "500", "--hidden", "32"]
    common += ["--lr", "1e-2", "--batch_size", "50", "--quiet", "--no-plots"]
    runs = {}
    for model, extra in (("gru", []), ("rnn", ["--activation", "sigmoid"])):
        workdir = str(tmp_path / model)
        runs[model] = sequential_mnist.main(
            ["--model", model, *extra, *common, "--workdir", workdir]
        )
    out = capsys.readouterr().out
    assert runs["gru"]["test_accuracy"] > 0.5  # chance is 0.1
    for results in runs.values():
        assert len(results["input_gradient_norms_initial"]) == 28
        assert results["input_gradient_ratio_trained"] == pytest.approx(
            results["input_gradient_norms_trained"][0] / results["input_gradient_norms_trained"][-1]
        )
    assert "input gradient norm, step 1 / step 28, initial: " in out
    assert out.strip().splitlines()[-1].startswith("test accuracy: ")
    config = json.load(open(tmp_path / "rnn" / "config.json"))
    assert (
        config["model"] == "rnn_classifier" and config["model_options"]["activation"] == "sigmoid"
    )
    table = sequential_mnist.main(["--compare", str(tmp_path / "gru"), str(tmp_path / "rnn")])
    assert set(table) == {"gru", "rnn (sigmoid)"}
    assert "| rnn (sigmoid) |" in capsys.readouterr().out
    assert (tmp_path / "input_gradients.png").exists()


def test_the_rnn_activation_is_refused_for_gated_cells():
    with pytest.raises(ConfigError, match="--activation sigmoid is the RNN's; --model lstm"):
        sequential_mnist.main(["--model", "lstm", "--activation", "sigmoid"])

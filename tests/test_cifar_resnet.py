"""The main job end to end on a few hundred real CIFAR-10 images, and the plots it leaves."""

import json
import os

import matplotlib.image
import numpy as np
import pytest

from experiments import cifar_resnet
from jaxdl.plots import __main__ as plots
from jaxdl.plots.run import INSIDE_FILES, PLOT_FILES

# one short real CIFAR-10 run (several minutes) serves every test marked slow here


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, data_dir):
    workdir = tmp_path_factory.mktemp("cifar") / "run"
    results = cifar_resnet.main(
        [
            "--train_limit",
            "1000",
            "--test_limit",
            "500",
            "--epochs",
            "2",
            "--batch_size",
            "64",
            "--quiet",
            "--workdir",
            str(workdir),
        ]
    )
    return workdir, results


@pytest.mark.slow
def test_short_run_learns_and_reports(short_run):
    workdir, results = short_run
    assert results["test_count"] == 500
    assert results["test_accuracy"] > 0.15  # chance is 0.10; 500 images make 0.15 a 4-sigma bar
    assert 0.0 < results["test_accuracy_flip_tta"] <= 1.0
    assert results["parameters"] == 3_190_456
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"] == "airbench_resnet" and config["optimizer"] == "airbench"
    assert config["crop_padding"] == 2 and config["flip"] and config["lookahead_every"] == 5
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train_loss", "train_accuracy", "val_accuracy", "images_per_second"} <= set(records[0])
    assert os.listdir(workdir / "checkpoints" / "latest") and os.listdir(
        workdir / "checkpoints" / "best"
    )


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], {"model": "airbench_resnet", "batch_size": 1024, "schedule": "triangle"}),
        (
            ["--recipe", "resnet20"],
            {"model": "resnet20", "batch_size": 64, "optimizer": "nesterov", "lookahead_every": 0},
        ),
        (["--recipe", "he2016"], {"model": "resnet20", "epochs": 182, "time_budget_minutes": 0}),
        (["--recipe", "resnet20", "--batch_size", "128"], {"batch_size": 128}),
    ],
)
def test_recipes_set_their_options_and_typed_options_win(argv, expected, monkeypatch):
    monkeypatch.setattr(cifar_resnet, "train_and_evaluate", lambda config: config)
    config = cifar_resnet.main(argv)
    assert {name: getattr(config, name) for name in expected} == expected


def assert_real_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100, path
    assert float(np.std(pixels[..., :3])) > 0.01, f"{path} is nearly blank"
    return pixels


@pytest.mark.slow
def test_every_plot_is_a_real_png(short_run):
    workdir, _ = short_run
    for name in PLOT_FILES:
        assert_real_png(workdir / "plots" / name)


@pytest.mark.slow
def test_filter_grid_is_not_constant(short_run):
    workdir, _ = short_run
    pixels = assert_real_png(workdir / "plots" / "filters.png")
    # 16 colour filters: many distinct colours, not one flat grey
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 200


@pytest.mark.slow
def test_plots_command_regenerates_and_compares(short_run, tmp_path):
    workdir, _ = short_run
    for name in PLOT_FILES:
        os.remove(workdir / "plots" / name)
    out = tmp_path / "compare.png"
    plots.main([str(workdir), str(workdir), "--out", str(out)])
    for name in PLOT_FILES + INSIDE_FILES:  # and the pictures of what the network learned
        assert_real_png(workdir / "plots" / name)
    assert_real_png(out)

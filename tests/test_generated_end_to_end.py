"""The whole training path on generated images, no prepared data needed (as flax's examples
test on mock data): config -> build -> loop -> test figures -> run directory, then a resume."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxdl.config import TrainConfig
from jaxdl.data.sources import ArrayDataset
from jaxdl.ops import onednn
from jaxdl.ops.onednn import tuning
from jaxdl.rundir import RunDir
from jaxdl.tasks.classification import Classification
from jaxdl.train import train_and_evaluate


def bright_quadrant(count: int, seed: int) -> ArrayDataset:
    """16x16 grey images of noise with one brighter quadrant; the label is the quadrant."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count)
    images = rng.integers(0, 100, (count, 16, 16, 1))
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        images[index, 8 * row : 8 * row + 8, 8 * col : 8 * col + 8] += 120
    return ArrayDataset(images.astype(np.uint8), labels.astype(np.int32), ("NW", "NE", "SW", "SE"))


class Quadrants(Classification):
    def splits(self, config):
        return bright_quadrant(800, 0), bright_quadrant(200, 1), bright_quadrant(200, 2)

    def describe(self, config, train, val, test):
        return f"quadrants: {len(train)} / {len(val)} / {len(test)} generated images"


CONFIG = TrainConfig(
    model="lenet5",
    epochs=2,
    batch_size=50,
    eval_batch_size=100,
    lr=3e-3,
    optimizer="adam",
    quiet=True,
    save_predictions=True,
)


def test_generated_run_learns_and_writes_its_run_directory(tmp_path):
    workdir = str(tmp_path / "run")
    results = train_and_evaluate(dataclasses.replace(CONFIG, workdir=workdir), Quadrants())
    assert results["test_accuracy"] > 0.9  # chance is 0.25
    assert results["epochs_run"] == 2 and results["test_count"] == 200
    run = RunDir(workdir)
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    assert run.read_results()["test_accuracy"] == results["test_accuracy"]
    assert run.load_predictions().shape == (200, 4)
    assert run.read_config()["model"] == "lenet5"
    for name in ("curves.png", "confusion_matrix.png", "filters.png", "saliency.png"):
        assert os.path.exists(os.path.join(run.plots, name)), name
    if onednn.status().available:  # the kernels each training shape ran on, for the resume
        choices = run.read_conv_choices()
        key = "50x16x16x1*5x5x1x6 s1x1 p8x8x8x8 d1x1 g1"  # LeNet-5's first layer, padded to 32
        assert choices[key] == {
            "backward_data": "onednn", "backward_weights": "onednn", "forward": "onednn",
        }  # fmt: skip
        # a resumed run takes the kernels its run directory names, whatever this process chose
        run.write_conv_choices(choices | {key: {"forward": "xla"}})
        tuning.forget()

    # the same command again resumes from the last checkpoint: nothing left to train
    again = train_and_evaluate(
        dataclasses.replace(CONFIG, workdir=workdir, plots=False, save_predictions=False),
        Quadrants(),
    )
    assert again["test_accuracy"] == results["test_accuracy"]
    assert again["epochs_run"] == 2
    if onednn.status().available:
        assert tuning.choices()[key]["forward"] == "xla"
        tuning.forget()

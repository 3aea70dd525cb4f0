"""What each kind of run draws (`jaxdl.plots.run`), on small generated inputs: real PNGs."""

from __future__ import annotations

import os

import numpy as np

from jaxdl.plots.run import save_curves, save_segmentation_plots
from tests.test_cifar_resnet import assert_real_png

HISTORY = [
    {"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.2 * e, "val_loss": 2.2 / e,
     "val_accuracy": 0.18 * e}
    for e in (1, 2, 3)
]  # fmt: skip


def test_segmentation_run_draws_masks_and_curves(tmp_path):
    rng = np.random.default_rng(0)
    canvases = rng.integers(0, 255, (3, 24, 24, 1), dtype=np.uint8)
    masks = rng.integers(0, 11, (3, 24, 24))
    names = ("background", *map(str, range(10)))
    paths = save_segmentation_plots(str(tmp_path), HISTORY, canvases, masks, masks[::-1], names)
    assert [os.path.basename(p) for p in paths] == ["segmentation.png", "curves.png"]
    for path in paths:
        assert_real_png(path)


def test_a_run_without_epochs_draws_no_curves(tmp_path):
    assert save_curves(str(tmp_path), []) == []
    assert_real_png(save_curves(str(tmp_path), HISTORY)[0])

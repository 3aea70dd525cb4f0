"""Fitting a run's epoch count to a time budget: the arithmetic, the calibration, a real run."""

import dataclasses
import json
import os

import chex
import jax
import numpy as np
import pytest

from jaxdl import budget as budget_lib
from jaxdl import data as data_lib
from jaxdl import parallel
from jaxdl.budget import Timing, calibrate, epochs_after_replan, epochs_within_budget, replan_epoch
from jaxdl.build import initial_state
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError
from jaxdl.tasks.classification import evaluate
from jaxdl.train import train_and_evaluate


def test_epochs_within_budget_counts_whole_epochs():
    # 80 steps of 0.125 s + 2 s of validation = 12 s per epoch (exact in binary floats)
    assert epochs_within_budget(120.0, 0.125, 80, 2.0, 50) == 10
    assert epochs_within_budget(119.9, 0.125, 80, 2.0, 50) == 9
    assert epochs_within_budget(120.0, 0.125, 80, 0.0, 50) == 12
    assert epochs_within_budget(120.0, 0.125, 80, 2.0, 4) == 4  # the --epochs cap
    assert epochs_within_budget(5.0, 0.125, 80, 2.0, 50) == 1  # never fewer than one
    with pytest.raises(ValueError, match="positive"):
        epochs_within_budget(0.0, 0.125, 80, 2.0, 50)


def test_replan_counts_the_epochs_left_at_their_measured_pace():
    assert replan_epoch(49) == 4 and replan_epoch(20) == 2 and replan_epoch(3) == 2
    assert replan_epoch(2) is None and replan_epoch(1) is None
    # 4 epochs took 10 + 12 + 12 + 14 = 48 s (median 12): 72 s left of 120 -> 6 more
    assert epochs_after_replan(120.0, [10.0, 12.0, 12.0, 14.0], 50) == 10
    assert epochs_after_replan(120.0, [10.0, 12.0, 12.0, 14.0], 8) == 8  # the --epochs cap
    assert epochs_after_replan(40.0, [10.0, 12.0, 12.0, 14.0], 50) == 5  # over: one more only
    with pytest.raises(ValueError, match="positive seconds"):
        epochs_after_replan(120.0, [], 50)


@pytest.fixture(scope="module")
def mnist_setup(data_dir):
    config = TrainConfig(
        dataset="mnist", model="mlp", model_options={"widths": (32,)}, batch_size=50
    )
    data = data_lib.load("mnist", "train", data_dir, limit=600)
    train, val = data_lib.train_val_split(data, 100, seed=0)
    mean, std = data_lib.channel_stats(train.images)
    preprocess = data_lib.Preprocess(mean, std, data_lib.Augmentation(0, False))
    steps = data_lib.steps_per_epoch(len(train), config.batch_size)
    state, _, key = initial_state(config, 10, train.image_shape, steps)
    return config, state, data_lib.to_device(train), data_lib.to_device(val), preprocess, key


def test_calibrate_times_real_steps_and_leaves_the_state_alone(mnist_setup):
    config, state, train, val, preprocess, key = mnist_setup
    before = jax.tree.map(np.asarray, state.params)
    runner = parallel.create_runner("single")
    timing = calibrate(
        runner.train,
        lambda state: evaluate(runner.evaluate, state, val, 1000, preprocess),
        state,
        lambda index: data_lib.train_batches(train, jax.random.fold_in(key, index), 50, preprocess),
        warmup_steps=2,
        chunks=3,
        chunk_steps=4,
    )
    assert 0 < timing.step_seconds < 5 and 0 < timing.eval_seconds < 5
    # 1 + 2 + 3 x 4 steps and two validation passes happened inside the total
    assert timing.total_seconds > 12 * timing.step_seconds + timing.eval_seconds
    # the step donates its input: calibrate must have trained a copy
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, state.params), before)
    assert int(state.step) == 0


BUDGETED = TrainConfig(
    dataset="mnist",
    model="mlp",
    model_options={"widths": (32,)},
    epochs=1000,
    time_budget_minutes=0.005,  # 0.3 s of training
    batch_size=50,
    train_limit=1100,
    test_limit=200,
    quiet=True,
    plots=False,
)


@pytest.mark.slow
def test_budgeted_run_plans_its_epochs_and_keeps_them_on_resume(tmp_path, data_dir, capsys):
    workdir = str(tmp_path / "run")
    results = train_and_evaluate(dataclasses.replace(BUDGETED, workdir=workdir))
    planned = results["epochs_planned"]
    assert 1 <= planned < 1000  # a tiny MLP epoch takes milliseconds, not 0.3 ms
    assert results["epochs_run"] == planned
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["epochs"] == planned
    # (the count the calibration chose, or the one re-planned after a tenth of the run)
    assert " epochs (calibration took" in capsys.readouterr().out

    # resumed with another budget, it keeps the schedule it started with
    again = train_and_evaluate(
        dataclasses.replace(BUDGETED, workdir=workdir, time_budget_minutes=5.0)
    )
    assert again["epochs_planned"] == planned
    assert f"keeping the {planned} epochs this run chose" in capsys.readouterr().out


def test_negative_budget_is_refused():
    with pytest.raises(ConfigError, match="--time_budget_minutes must be 0 .off. or a positive"):
        dataclasses.replace(BUDGETED, time_budget_minutes=-1.0).validate()


def test_budgeted_run_replans_from_its_own_epochs(tmp_path, data_dir, capsys, monkeypatch):
    # A calibration that says 6 epochs fit; the real epochs (milliseconds) then leave room for
    # the --epochs cap of 9, so after epoch 2 the run lays its schedule over 9 epochs.
    steps = 1000 // BUDGETED.batch_size  # 1,100 images less the 100 of validation, batch 50
    budget_seconds = 60.0  # time_budget_minutes=1.0
    slow = Timing(step_seconds=budget_seconds / (6.5 * steps), eval_seconds=0.0, total_seconds=0.1)
    monkeypatch.setattr(budget_lib, "calibrate", lambda *args, **kwargs: slow)
    workdir = str(tmp_path / "run")
    config = dataclasses.replace(
        BUDGETED, workdir=workdir, time_budget_minutes=1.0, epochs=9, val_size=100
    )
    results = train_and_evaluate(config)
    out = capsys.readouterr().out
    assert ": 6 epochs (calibration took" in out
    assert "time budget: epochs 1-2 took" in out and "9 epochs in all (planned 6)" in out
    assert results["epochs_planned"] == results["epochs_run"] == 9
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["epochs"] == 9
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records] == list(range(1, 10))
    assert all(r["val_seconds"] > 0 for r in records)
    # the schedule now ends at epoch 9: still well above zero at the end of epoch 6 (a 6-epoch
    # cosine would be at 0 there)
    assert records[5]["learning_rate"] > 0.1 * BUDGETED.lr and records[-1]["learning_rate"] < 1e-6

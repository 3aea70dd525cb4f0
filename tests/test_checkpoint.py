"""Checkpoints: exact resume from any saved position, damaged ones skipped, wrong model refused."""

import dataclasses
import json
import os
import shutil

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxdl import models
from jaxdl.checkpoint import Checkpointer
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError
from jaxdl.optim import create_optimizer
from jaxdl.state import create_train_state
from jaxdl.train import train_and_evaluate

TINY = TrainConfig(
    dataset="mnist",
    model="mlp",
    model_options={"widths": (32,), "dropout_rate": 0.2},
    epochs=2,
    batch_size=50,
    train_limit=550,
    test_limit=200,
    quiet=True,
    checkpoint_every_steps=3,
    keep_checkpoints=100,
)


def latest_state(workdir):
    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints", "latest"))
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return step, jax.device_get(restored["state"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    results = train_and_evaluate(dataclasses.replace(TINY, workdir=workdir))
    return workdir, results


def test_resume_mid_epoch_gives_bit_identical_parameters(uninterrupted, tmp_path):
    reference_dir, reference_results = uninterrupted
    workdir = str(tmp_path / "resumed")
    shutil.copytree(reference_dir, workdir)
    latest = os.path.join(workdir, "checkpoints", "latest")
    steps = sorted(int(d) for d in os.listdir(latest) if d.isdigit())
    assert 6 in steps and steps[-1] == 18  # 9 batches per epoch, 2 epochs
    for step in steps:  # "lose" everything after step 6: the middle of epoch 1
        if step > 6:
            shutil.rmtree(os.path.join(latest, str(step)))
    results = train_and_evaluate(dataclasses.replace(TINY, workdir=workdir))
    step, resumed = latest_state(workdir)
    ref_step, reference = latest_state(reference_dir)
    assert step == ref_step == 18
    jax.tree.map(np.testing.assert_array_equal, resumed, reference)
    assert results["test_accuracy"] == reference_results["test_accuracy"]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2]


def test_resume_keeps_the_lookahead_average_bit_identical(tmp_path, data_dir):
    """The airbench optimizer's lookahead average lives in the optimizer state: a run cut at
    step 7 (after the average's first move at step 5) resumes onto the same parameters."""
    config = dataclasses.replace(
        TINY, optimizer="airbench", schedule="triangle", lr=0.5, momentum=0.85,
        weight_decay=1e-3, lookahead_every=5,
    )  # fmt: skip
    reference_dir, workdir = str(tmp_path / "whole"), str(tmp_path / "cut")
    reference_results = train_and_evaluate(dataclasses.replace(config, workdir=reference_dir))
    shutil.copytree(reference_dir, workdir)
    latest = os.path.join(workdir, "checkpoints", "latest")
    for step in (int(d) for d in os.listdir(latest) if d.isdigit()):
        if step > 6:
            shutil.rmtree(os.path.join(latest, str(step)))
    results = train_and_evaluate(dataclasses.replace(config, workdir=workdir))
    (step, resumed), (_, reference) = latest_state(workdir), latest_state(reference_dir)
    assert step == 18
    jax.tree.map(np.testing.assert_array_equal, resumed, reference)
    assert results["test_accuracy"] == reference_results["test_accuracy"]
    # restored without a target, the optimizer state is nested dicts: the chain's last part
    chain = resumed["opt_state"]
    average = chain[str(len(chain) - 1)]["average"]
    assert not np.array_equal(average["Dense_0"]["kernel"], resumed["params"]["Dense_0"]["kernel"])


def test_truncated_latest_checkpoint_falls_back_to_the_previous(uninterrupted, tmp_path, capsys):
    reference_dir, _ = uninterrupted
    workdir = str(tmp_path / "damaged")
    shutil.copytree(reference_dir, workdir)
    newest = os.path.join(workdir, "checkpoints", "latest", "18", "state")
    for root, _, files in os.walk(newest):
        for name in files:
            with open(os.path.join(root, name), "r+b") as f:
                f.truncate(max(0, os.path.getsize(os.path.join(root, name)) // 3))
    model = models.create("mlp", num_classes=10, widths=(32,), dropout_rate=0.2)
    tx, _ = create_optimizer(TINY.optimizer_config(), steps_per_epoch=9, epochs=2)
    target = create_train_state(model, tx, jax.random.PRNGKey(0), (1, 28, 28, 1))
    messages = []
    state, meta = Checkpointer(os.path.join(workdir, "checkpoints")).restore_latest(
        target, "mlp", log=messages.append
    )
    assert int(state.step) == 15 and meta["epoch"] == 2 and meta["index"] == 6
    assert len(messages) == 1 and "step 18 is damaged" in messages[0]


def test_checkpoint_of_another_model_is_refused(uninterrupted, tmp_path):
    reference_dir, _ = uninterrupted
    model = models.create("mlp", num_classes=10, widths=(64,))
    target = create_train_state(model, optax.adam(1e-3), jax.random.PRNGKey(0), (1, 28, 28, 1))
    with pytest.raises(
        ConfigError, match="is of model 'mlp' with 25450 parameters, not 'mlp' with 50890"
    ):
        Checkpointer(os.path.join(reference_dir, "checkpoints")).restore_latest(target, "mlp")


def test_best_checkpoint_is_kept_apart(uninterrupted):
    reference_dir, _ = uninterrupted
    best = os.path.join(reference_dir, "checkpoints", "best")
    assert len([d for d in os.listdir(best) if d.isdigit()]) == 1

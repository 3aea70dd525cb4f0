"""Fine-tuning: a run started from another run's trained weights (`--init_from`: every layer
of the same name and shape, the rest fresh) with some parameters frozen (`--freeze`)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import models
from jaxdl.build import start_from_trained
from jaxdl.checkpoint import trained_weights
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError
from jaxdl.optim import OptimizerConfig, create_optimizer, frozen_labels
from jaxdl.state import create_train_state, graft
from jaxdl.train import train_and_evaluate

TINY = TrainConfig(
    dataset="mnist", model="mlp", model_options={"widths": (16,)}, epochs=1, batch_size=32,
    eval_batch_size=100, train_limit=320, test_limit=100, val_size=32, quiet=True, plots=False,
)  # fmt: skip


def test_graft_takes_same_path_and_shape_and_leaves_the_rest():
    fresh = {"trunk": {"kernel": jnp.zeros((3, 4))}, "head": {"kernel": jnp.zeros((4, 2))}}
    trained = {"trunk": {"kernel": jnp.ones((3, 4))}, "head": {"kernel": jnp.ones((4, 10))}}
    grafted, taken, left = graft(fresh, trained)
    assert taken == ["trunk/kernel"] and left == ["head/kernel"]
    np.testing.assert_array_equal(grafted["trunk"]["kernel"], 1.0)
    np.testing.assert_array_equal(grafted["head"]["kernel"], 0.0)


def test_frozen_parameters_do_not_move():
    params = {"Dense_0": {"kernel": jnp.ones((2, 2))}, "Dense_1": {"kernel": jnp.ones((2, 2))}}
    assert frozen_labels(params, "Dense_0") == {
        "Dense_0": {"kernel": "frozen"},
        "Dense_1": {"kernel": "train"},
    }
    config = OptimizerConfig(name="adam", lr=0.1, schedule="constant", freeze="^Dense_0/")
    tx, _ = create_optimizer(config, 1, 1)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new["Dense_0"]["kernel"], 1.0)
    assert float(new["Dense_1"]["kernel"][0, 0]) < 1.0
    with pytest.raises(ConfigError, match="not a regular expression"):
        OptimizerConfig(freeze="Dense_(").validate()


def test_a_run_starts_from_another_runs_weights_and_trains_only_what_is_not_frozen(
    tmp_path, data_dir
):
    source = str(tmp_path / "source")
    train_and_evaluate(dataclasses.replace(TINY, workdir=source, data_dir=data_dir))
    pretrained = trained_weights(source)["params"]
    tuned_dir = str(tmp_path / "tuned")
    tuned = dataclasses.replace(
        TINY, workdir=tuned_dir, data_dir=data_dir, init_from=source, freeze="Dense_0", lr=1e-2
    )
    train_and_evaluate(tuned)
    after = trained_weights(tuned_dir)["params"]
    np.testing.assert_array_equal(after["Dense_0"]["kernel"], pretrained["Dense_0"]["kernel"])
    assert not np.allclose(after["Dense_1"]["kernel"], pretrained["Dense_1"]["kernel"])
    # a model with another head (2 classes): the trunk comes over, the head starts fresh
    model = models.create("mlp", num_classes=2, widths=(16,))
    tx, _ = create_optimizer(OptimizerConfig(), 1, 1)
    state = create_train_state(model, tx, jax.random.PRNGKey(5), (1, 28, 28, 1))
    started = start_from_trained(state, source)
    np.testing.assert_array_equal(
        started.params["Dense_0"]["kernel"], pretrained["Dense_0"]["kernel"]
    )
    np.testing.assert_array_equal(
        started.params["Dense_1"]["kernel"], state.params["Dense_1"]["kernel"]
    )
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        trained_weights(str(tmp_path / "nothing_here"))


def test_init_from_takes_a_relative_run_directory(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_and_evaluate(dataclasses.replace(TINY, workdir="runs/source", data_dir=data_dir))
    assert set(trained_weights("runs/source")["params"]) == {"Dense_0", "Dense_1"}


def test_a_class_subset_is_relabelled_in_the_given_order():
    from jaxdl.data.sources import ArrayDataset
    from jaxdl.tasks.subset import keep_classes

    labels = np.array([0, 3, 5, 3, 9, 5, 5], np.int32)
    split = ArrayDataset(
        np.arange(7)[:, None, None, None].astype(np.uint8), labels, tuple("abcdefghij")
    )
    cats_dogs = keep_classes(split, (5, 3))
    np.testing.assert_array_equal(cats_dogs.images[:, 0, 0, 0], [1, 2, 3, 5, 6])
    np.testing.assert_array_equal(cats_dogs.labels, [1, 0, 1, 0, 0])
    assert cats_dogs.class_names == ("f", "d")
    assert len(keep_classes(split, (5, 3), limit=2)) == 2

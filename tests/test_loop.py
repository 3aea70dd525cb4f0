"""The one training loop, `jaxdl.loop.fit`, on small synthetic problems: what every task plugs
into it (selection metric and direction, several networks and optimizers in one state, batches
of any tree, per-step hooks, a step swapped mid-run, a re-planned epoch count) and exact resume
of a two-player state."""

from __future__ import annotations

import dataclasses
import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from jaxdl.budget import Replan
from jaxdl.checkpoint import Checkpointer
from jaxdl.loop import Hook, Selection, fit
from jaxdl.optim import OptimizerConfig, create_optimizer
from jaxdl.rundir import RunDir
from jaxdl.state import create_train_state
from jaxdl.step import train_step


@struct.dataclass
class Counter:
    """The smallest state the loop takes: a step and one number."""

    step: jax.Array
    total: jax.Array


@jax.jit
def add_step(state: Counter, batch) -> tuple[Counter, dict]:
    total = state.total + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(batch))
    return state.replace(step=state.step + 1, total=total), {"loss": total}


def counter() -> Counter:
    return Counter(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))


def ones_batches(steps: int, tree=lambda: {"x": jnp.ones((4, 2))}):
    return lambda epoch, start: (tree() for _ in range(start, steps))


def fit_counter(steps: int, epochs: int, **options):
    """`fit` of a fresh `Counter` with `add_step` over `steps` batches of ones an epoch."""
    options.setdefault("batches", ones_batches(steps))
    return fit(
        counter(),
        train_step=add_step,
        steps_per_epoch=steps,
        epochs=epochs,
        quiet=True,
        **options,
    )


class Scripted:
    """An evaluator whose metric follows a script, one value per epoch."""

    def __init__(self, name: str, values):
        self.name, self.values, self.calls = name, list(values), 0

    def __call__(self, state) -> dict:
        self.calls += 1
        return {self.name: self.values[self.calls - 1]}


def test_selection_min_picks_the_lowest_and_stops_early(tmp_path):
    evaluator = Scripted("val_bits_per_char", [3.0, 2.0, 2.5, 2.6, 2.7, 1.0])
    result = fit_counter(
        3,
        6,
        evaluators=[evaluator],
        selection=Selection("val_bits_per_char", "min"),
        early_stopping_patience=2,
        rundir=RunDir(str(tmp_path)),
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]  # no gain after epoch 2
    assert result.best_epoch == 2
    # the best epoch's state: 2 epochs x 3 steps x 8 ones
    assert int(result.state.step) == 6 and float(result.state.total) == 48.0
    with open(tmp_path / "metrics.jsonl") as f:
        assert [json.loads(line)["val_bits_per_char"] for line in f] == [3.0, 2.0, 2.5, 2.6]
    with pytest.raises(ValueError, match="'max' or 'min'"):
        Selection("val_loss", "lowest")


def test_selection_max_keeps_the_highest():
    evaluator = Scripted("val_accuracy", [0.5, 0.7, 0.6])
    result = fit_counter(2, 3, evaluators=[evaluator])
    assert result.best_epoch == 2 and len(result.history) == 3


def test_batches_may_be_any_tree_of_arrays():
    def tree():
        return {
            "tokens": jnp.ones((4, 16), jnp.int32),
            "boxes": {"xyxy": jnp.ones((4, 3, 4)), "valid": jnp.ones((4, 3), jnp.int32)},
        }

    result = fit_counter(5, 2, batches=ones_batches(5, tree))
    per_step = 4 * 16 + 4 * 3 * 4 + 4 * 3
    assert float(result.state.total) == 10 * per_step
    assert result.history[-1]["step"] == 10 and result.history[-1]["images_per_second"] > 0
    assert "train_loss" in result.history[0]


class EveryStep(Hook):
    """Adds 1000 to the total after every step (as a lookahead moves the state)."""

    def __init__(self):
        self.steps = []

    def after_step(self, state, step):
        self.steps.append(step)
        return state.replace(total=state.total + 1000)


class SwapStep(Hook):
    """From epoch `at` on, trains with `step` instead."""

    def __init__(self, at: int, step):
        self.at, self.step = at, step

    def before_epoch(self, progress):
        if progress.epoch < self.at:
            return progress
        return dataclasses.replace(progress, train_step=self.step)


@jax.jit
def double_step(state: Counter, batch) -> tuple[Counter, dict]:
    total = state.total + 2 * jnp.sum(batch["x"])
    return state.replace(step=state.step + 1, total=total), {"loss": total}


def test_per_step_hooks_and_a_step_swapped_mid_run(capsys):
    every = EveryStep()
    result = fit_counter(2, 3, hooks=[every, SwapStep(3, double_step)])
    assert every.steps == [1, 2, 3, 4, 5, 6]
    # epochs 1-2: 4 steps of 8; epoch 3: 2 steps of 16; plus 6 x 1000 from the hook
    assert float(result.state.total) == 4 * 8 + 2 * 16 + 6000
    assert capsys.readouterr().out.count("compiled the train step") == 2


class Shorten(Hook):
    def after_epoch(self, progress):
        return dataclasses.replace(progress, epochs=3) if progress.epoch == 1 else progress


def test_a_hook_can_change_the_number_of_epochs():
    result = fit_counter(1, 10, hooks=[Shorten()])
    assert len(result.history) == 3 and result.epochs == 3


class TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def test_the_time_budget_replans_through_a_hook():
    config = OptimizerConfig(name="sgd", lr=0.1, schedule="warmup_cosine", warmup_epochs=1.0)
    steps = 4
    tx, learning_rate_fn = create_optimizer(config, steps, 5)
    state = create_train_state(TinyNet(), tx, jax.random.PRNGKey(0), (1, 6))
    key = jax.random.PRNGKey(1)
    batch = {"image": jax.random.normal(key, (8, 6)), "label": jnp.arange(8) % 3}
    changes = []
    replan = Replan(2, 3600.0, 12, config, steps, on_change=changes.append)
    result = fit(
        state,
        train_step=jax.jit(train_step),
        batches=lambda epoch, start: (batch for _ in range(start, steps)),
        steps_per_epoch=steps,
        epochs=5,
        learning_rate_fn=learning_rate_fn,
        hooks=[replan],
        quiet=True,
    )
    # an hour leaves room for the cap: 12 epochs, the schedule laid over them
    assert changes == [12] and result.epochs == 12 and len(result.history) == 12
    expected = create_optimizer(config, steps, 12)[1]
    assert result.learning_rate_fn(20) == pytest.approx(float(expected(20)))
    assert result.history[-1]["learning_rate"] == pytest.approx(float(expected(12 * steps - 1)))


@struct.dataclass
class TwoPlayers:
    """Two networks and two optimizers in one state, as a GAN holds them."""

    step: jax.Array
    params: dict
    opt_state: dict
    rng: jax.Array


OPTIMIZER = optax.adam(1e-2)


def two_players() -> TwoPlayers:
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    params = {
        "generator": {"w": jax.random.normal(keys[0], (2, 4))},
        "critic": {"w": jax.random.normal(keys[1], (4,))},
    }
    opt_state = {name: OPTIMIZER.init(p) for name, p in params.items()}
    return TwoPlayers(jnp.zeros((), jnp.int32), params, opt_state, jax.random.PRNGKey(3))


@jax.jit
def alternating_step(state: TwoPlayers, batch) -> tuple[TwoPlayers, dict]:
    """The critic learns to score real rows high and generated rows low, then the generator
    learns to be scored high: one pure step, both updates."""
    noise = jax.random.normal(
        jax.random.fold_in(state.rng, state.step), (batch["real"].shape[0], 2)
    )

    def critic_loss(critic, generator):
        fake = noise @ generator["w"]
        return jnp.mean(fake @ critic["w"]) - jnp.mean(batch["real"] @ critic["w"])

    c_loss, c_grads = jax.value_and_grad(critic_loss)(
        state.params["critic"], state.params["generator"]
    )
    c_updates, c_opt = OPTIMIZER.update(c_grads, state.opt_state["critic"])
    critic = optax.apply_updates(state.params["critic"], c_updates)
    g_loss, g_grads = jax.value_and_grad(lambda g: -critic_loss(critic, g))(
        state.params["generator"]
    )
    g_updates, g_opt = OPTIMIZER.update(g_grads, state.opt_state["generator"])
    generator = optax.apply_updates(state.params["generator"], g_updates)
    new = state.replace(
        step=state.step + 1,
        params={"generator": generator, "critic": critic},
        opt_state={"generator": g_opt, "critic": c_opt},
    )
    return new, {"critic_loss": c_loss, "generator_loss": g_loss}


def real_batches(epoch, start):
    for index in range(start, 4):
        key = jax.random.fold_in(jax.random.PRNGKey(epoch), index)
        yield {"real": 1.0 + jax.random.normal(key, (16, 4))}


def test_two_networks_two_optimizers_train_and_resume_exactly(tmp_path):
    options = dict(train_step=alternating_step, batches=real_batches, steps_per_epoch=4, quiet=True)
    whole = fit(two_players(), epochs=3, **options)
    start = two_players()
    for name in ("generator", "critic"):
        assert not np.allclose(whole.state.params[name]["w"], start.params[name]["w"])
    assert {"train_critic_loss", "train_generator_loss"} <= set(whole.history[0])

    # interrupted after epoch 1 (a checkpoint), resumed from it: the same final state
    directory = str(tmp_path / "checkpoints")
    meta = {"model": "two_players", "parameters": 12}
    checkpointer = Checkpointer(directory)
    fit(two_players(), epochs=1, checkpointer=checkpointer, checkpoint_meta=meta, **options)
    restored, position = checkpointer.restore_latest(two_players(), "two_players")
    checkpointer.close()
    assert position["epoch"] == 2 and position["index"] == 0
    rest = fit(restored, epochs=3, start_epoch=position["epoch"], **options)
    chex.assert_trees_all_equal(rest.state, whole.state)
    assert os.path.isdir(directory)


def test_a_resumed_run_still_returns_its_best_epoch(tmp_path):
    """With early stopping, a run returns its best epoch's state; resumed after that epoch
    (here: finished and run again), the best state comes back from checkpoints/best."""
    options = dict(train_step=alternating_step, batches=real_batches, steps_per_epoch=4, quiet=True)
    selection = Selection("val_accuracy", "max")
    meta = {"model": "two_players", "parameters": 12}
    directory = str(tmp_path / "checkpoints")
    checkpointer = Checkpointer(directory, best_mode="max")
    first = fit(
        two_players(),
        epochs=3,
        evaluators=[Scripted("val_accuracy", [0.5, 0.9, 0.7])],
        selection=selection,
        early_stopping_patience=5,
        rundir=RunDir(str(tmp_path)),
        checkpointer=checkpointer,
        checkpoint_meta=meta,
        **options,
    )
    assert first.best_epoch == 2 and int(first.state.step) == 8  # epoch 2's state, not 3's
    latest, position = checkpointer.restore_latest(two_players(), "two_players")
    best = checkpointer.restore_best(two_players(), "two_players")
    checkpointer.close()
    assert int(latest.step) == 12 and int(best.step) == 8
    chex.assert_trees_all_equal(best.params, first.state.params)
    history = RunDir(str(tmp_path)).read_metrics(before_epoch=position["epoch"])
    for kept, expected in ((None, latest), (best, best)):
        again = fit(
            latest,
            epochs=3,
            selection=selection,
            early_stopping_patience=5,
            start_epoch=position["epoch"],
            history=history,
            best_state=kept,
            **options,
        )
        assert again.best_epoch == 2
        chex.assert_trees_all_equal(again.state.params, expected.params)
    empty = Checkpointer(str(tmp_path / "none"))
    assert empty.restore_best(two_players(), "two_players") is None
    empty.close()

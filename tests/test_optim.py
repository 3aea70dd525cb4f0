import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.errors import ConfigError
from jaxdl.optim import (
    OptimizerConfig,
    create_learning_rate_fn,
    create_optimizer,
    feed_plateau,
    plateau_scale,
)

STEPS_PER_EPOCH, EPOCHS = 10, 10  # 100 steps in all


def lr_at(schedule, **kwargs):
    fn = create_learning_rate_fn(OptimizerConfig(schedule=schedule, lr=0.1, **kwargs), 10, 10)
    return lambda step: float(fn(step))


def test_constant():
    lr = lr_at("constant")
    assert lr(0) == lr(99) == pytest.approx(0.1)


def test_step_schedule_drops_tenfold_at_half_and_three_quarters():
    lr = lr_at("step")
    assert lr(49) == pytest.approx(0.1)
    assert lr(50) == pytest.approx(0.01)
    assert lr(74) == pytest.approx(0.01)
    assert lr(75) == pytest.approx(0.001)


def test_cosine():
    lr = lr_at("cosine")
    assert lr(0) == pytest.approx(0.1)
    assert lr(50) == pytest.approx(0.05)
    assert lr(100) == pytest.approx(0.0, abs=1e-9)


def test_warmup_cosine():
    lr = lr_at("warmup_cosine", warmup_epochs=1.0)  # 10 warm-up steps
    assert lr(0) == pytest.approx(0.0)
    assert lr(5) == pytest.approx(0.05)
    assert lr(10) == pytest.approx(0.1)
    assert lr(55) == pytest.approx(0.05, rel=1e-5)  # half way through the 90 cosine steps
    assert lr(100) == pytest.approx(0.0, abs=1e-9)


def test_onecycle_peaks_at_thirty_percent():
    lr = lr_at("onecycle")
    assert lr(30) == pytest.approx(0.1)
    assert lr(0) < 0.01 and lr(100) < 1e-4


def test_exponential_decays_by_the_same_factor_to_lr_decay_at_the_end():
    lr = lr_at("exponential", lr_decay=0.01)
    assert lr(0) == pytest.approx(0.1)
    assert lr(50) == pytest.approx(0.01, rel=1e-5)  # 0.1 x 0.01 ** (50 / 100)
    assert lr(100) == pytest.approx(0.001, rel=1e-5)
    assert lr(30) / lr(20) == pytest.approx(lr(80) / lr(70), rel=1e-5)


def test_reduce_on_plateau_lowers_the_rate_after_patience_epochs_without_improvement():
    config = OptimizerConfig(name="sgd", lr=0.5, schedule="plateau", plateau_patience=2)
    tx, learning_rate_fn = create_optimizer(config, STEPS_PER_EPOCH, EPOCHS)
    params = {"kernel": jnp.ones(3)}
    state, scales = tx.init(params), []
    for epoch, val_loss in enumerate([1.0, 0.8, 0.9, 0.85, 0.81, 0.7, 0.75, 0.72], start=1):
        state = feed_plateau(config, state, val_loss, epoch)
        state = feed_plateau(config, state, val_loss, epoch)  # fed twice (a resume): once
        scales.append(plateau_scale(state))
    # best 0.8 at epoch 2; epochs 3 and 4 do not beat it: the rate drops tenfold at epoch 4;
    # 0.81 (5) is no better either, 0.7 (6) is, 0.75 and 0.72 (7, 8) are not: drops at 8
    assert scales == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01])
    updates, _ = tx.update({"kernel": jnp.ones(3)}, state, params)
    np.testing.assert_allclose(updates["kernel"], -0.5 * 0.01, rtol=1e-6)
    assert float(learning_rate_fn(99)) == pytest.approx(0.5)  # the base rate stays


def test_adagrad_equals_optax_adagrad():
    params = {"kernel": jnp.array([1.0, -2.0])}
    tx, _ = create_optimizer(OptimizerConfig(name="adagrad", lr=0.1, schedule="constant"), 1, 1)
    reference = optax.adagrad(0.1)
    ours, theirs = tx.init(params), reference.init(params)
    for grads in ({"kernel": jnp.array([0.5, 1.0])}, {"kernel": jnp.array([-1.0, 3.0])}):
        mine, ours = tx.update(grads, ours, params)
        want, theirs = reference.update(grads, theirs, params)
        np.testing.assert_allclose(mine["kernel"], want["kernel"], rtol=1e-6)


def one_update(config, params, grads):
    tx, _ = create_optimizer(config, STEPS_PER_EPOCH, EPOCHS)
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates)


@pytest.mark.parametrize(
    "name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
)
def test_every_optimizer_moves_against_the_gradient(name):
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    grads = jax.tree.map(jnp.ones_like, params)
    new = one_update(OptimizerConfig(name=name, lr=0.1, schedule="constant"), params, grads)
    assert all(np.all(np.asarray(n) < 1.0) for n in jax.tree.leaves(new))


def test_sgd_first_step_by_hand():
    params = {"kernel": jnp.array([[2.0]])}
    new = one_update(
        OptimizerConfig(name="sgd", lr=0.1, schedule="constant"),
        params,
        {"kernel": jnp.array([[0.5]])},
    )
    np.testing.assert_allclose(new["kernel"], [[2.0 - 0.1 * 0.5]])


def test_decoupled_weight_decay_shrinks_kernels_not_biases():
    params = {"kernel": jnp.array([[2.0]]), "bias": jnp.array([2.0])}
    zero = jax.tree.map(jnp.zeros_like, params)
    config = OptimizerConfig(name="adamw", lr=0.1, weight_decay=0.5, schedule="constant")
    new = one_update(config, params, zero)
    np.testing.assert_allclose(new["kernel"], [[2.0 - 0.1 * 0.5 * 2.0]], rtol=1e-6)
    np.testing.assert_allclose(new["bias"], [2.0])
    assert config.l2_weight() == 0.0


def test_l2_mode_puts_decay_in_the_loss_not_the_optimizer():
    config = OptimizerConfig(name="sgd", weight_decay=5e-4, schedule="constant")
    assert config.l2_weight() == 5e-4
    params = {"kernel": jnp.array([[2.0]])}
    unchanged = one_update(config, params, {"kernel": jnp.array([[0.0]])})
    np.testing.assert_allclose(unchanged["kernel"], [[2.0]])


@pytest.mark.parametrize(
    "config, message",
    [
        (OptimizerConfig(name="lion"), "unknown optimizer 'lion'"),
        (OptimizerConfig(schedule="exp"), "unknown schedule 'exp'"),
        (OptimizerConfig(lr=0.0), "learning rate must be positive"),
        (OptimizerConfig(lr=-1.0), "learning rate must be positive"),
        (OptimizerConfig(weight_decay=-1.0), "weight decay must be zero or positive"),
    ],
)
def test_bad_config_is_one_clear_sentence(config, message):
    with pytest.raises(ConfigError, match=message):
        create_optimizer(config, 10, 10)


def test_a_plateau_run_feeds_its_validation_loss_and_resumes_on_the_same_scale(
    tmp_path, data_dir, capsys
):
    import dataclasses
    import shutil

    from jaxdl.build import initial_state
    from jaxdl.checkpoint import Checkpointer
    from jaxdl.config import TrainConfig
    from jaxdl.train import train_and_evaluate

    config = TrainConfig(
        dataset="mnist", model="softmax_regression", epochs=3, batch_size=64,
        eval_batch_size=100, lr=1e-12, optimizer="sgd", schedule="plateau", plateau_patience=1,
        train_limit=640, test_limit=100, val_size=64, quiet=True, plots=False,
        keep_checkpoints=10, data_dir=data_dir, workdir=str(tmp_path / "straight"),
    )  # fmt: skip
    straight = train_and_evaluate(config)
    # lr 1e-12 learns nothing: epoch 2's validation loss is no better than epoch 1's, so the
    # rate drops before epoch 3
    assert "reduce on plateau: learning rate x 0.1 of --lr from epoch 3" in capsys.readouterr().out

    def final_scale(workdir):
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), 10, "max")
        state, _, _ = initial_state(config, 10, (28, 28, 1), 9)  # (640 - 64) // 64 steps
        restored, _ = checkpointer.restore_latest(state, config.model)
        checkpointer.close()
        return plateau_scale(restored.opt_state)

    assert final_scale(config.workdir) == pytest.approx(0.1)
    resumed_dir = tmp_path / "resumed"  # lose epoch 3: resume from the end of epoch 2
    shutil.copytree(config.workdir, resumed_dir)
    latest = resumed_dir / "checkpoints" / "latest"
    shutil.rmtree(latest / str(max(int(d) for d in os.listdir(latest) if d.isdigit())))
    resumed = train_and_evaluate(dataclasses.replace(config, workdir=str(resumed_dir)))
    assert final_scale(str(resumed_dir)) == pytest.approx(0.1)
    assert resumed["test_loss"] == straight["test_loss"]


def test_triangle_schedule_is_airbenchs():
    fn = create_learning_rate_fn(OptimizerConfig(schedule="triangle", lr=2.0), 10, 10)
    np.testing.assert_allclose(
        [float(fn(s)) for s in (0, 23, 100, 150)], [0.4, 2.0, 0.14, 0.14], rtol=1e-6
    )


def test_airbench_optimizer_is_the_recipes():
    from jaxdl import models
    from jaxdl.recipes import airbench94

    recipe = airbench94.Recipe()
    lr, weight_decay = airbench94.mean_loss_rates(recipe)
    config = OptimizerConfig(
        name="airbench", lr=lr, momentum=0.85, weight_decay=weight_decay, schedule="triangle"
    )
    assert config.l2_weight() == 0.0  # its decay is its own, not the step's
    tx, _ = create_optimizer(config, steps_per_epoch=2, epochs=5)
    reference = airbench94.optimizer(recipe, steps_per_epoch=2, total_steps=10)
    params = models.create("airbench94").init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    params = params["params"]
    grads = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)
    state, reference_state = tx.init(params), reference.init(params)
    for _ in range(8):  # past the whitening bias's 3 epochs
        updates, state = tx.update(grads, state, params)
        expected, reference_state = reference.update(grads, reference_state, params)
        for u, e in zip(jax.tree.leaves(updates), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-9)


def test_lookahead_against_its_definition():
    """Every 5th step the parameters land on an average that keeps 0.95^5 (t / T)^3 of itself;
    other steps are SGD's; the average is carried in the optimizer state."""
    total, lr = 12, 0.1
    config = OptimizerConfig(name="sgd", lr=lr, schedule="constant", lookahead_every=5)
    tx, _ = create_optimizer(config, steps_per_epoch=total, epochs=1)
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grad = lambda p: {"w": p["w"] ** 2 - 1.0}
    state = tx.init(params)
    w, average = np.array([1.0, -2.0, 3.0]), np.array([1.0, -2.0, 3.0])
    for t in range(1, total + 1):
        updates, state = tx.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
        w = w - lr * (w**2 - 1.0)
        if t % 5 == 0:
            decay = 0.95**5 * (t / total) ** 3
            average = decay * average + (1 - decay) * w
            w = average.copy()
        np.testing.assert_allclose(params["w"], w, rtol=1e-6)
        np.testing.assert_allclose(state[-1].average["w"], average, rtol=1e-6)
    assert int(state[-1].count) == total


def test_lookahead_refuses_a_negative_period():
    with pytest.raises(ConfigError, match="--lookahead_every must be 0"):
        OptimizerConfig(lookahead_every=-1).validate()


def test_airbench_refuses_decoupled_decay():
    config = OptimizerConfig(name="airbench", weight_decay=1e-3, weight_decay_mode="decoupled")
    with pytest.raises(ConfigError, match="airbench applies its own coupled weight decay"):
        config.validate()

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl.errors import ConfigError
from jaxdl.optim import OptimizerConfig, create_learning_rate_fn, create_optimizer

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


def one_update(config, params, grads):
    tx, _ = create_optimizer(config, STEPS_PER_EPOCH, EPOCHS)
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
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
        (OptimizerConfig(name="adagrad"), "unknown optimizer 'adagrad'"),
        (OptimizerConfig(schedule="exp"), "unknown schedule 'exp'"),
        (OptimizerConfig(lr=0.0), "learning rate must be positive"),
        (OptimizerConfig(lr=-1.0), "learning rate must be positive"),
        (OptimizerConfig(weight_decay=-1.0), "weight decay must be zero or positive"),
    ],
)
def test_bad_config_is_one_clear_sentence(config, message):
    with pytest.raises(ConfigError, match=message):
        create_optimizer(config, 10, 10)

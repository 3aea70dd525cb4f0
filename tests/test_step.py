"""The step contract of DESIGN.md: pure, one compile per shape, reproducible, correct gradients."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxdl import models
from jaxdl.losses import softmax_cross_entropy
from jaxdl.nn import ConvBN
from jaxdl.state import create_train_state
from jaxdl.step import eval_step, train_step


class TinyConvNet(nn.Module):
    """Conv-BN-ReLU, dropout, dense: exercises batch statistics and the dropout RNG."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = ConvBN(4, 3)(x, train)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


def make_state(model=None, shape=(1, 8, 8, 3)):
    model = model or TinyConvNet()
    return create_train_state(model, optax.sgd(0.1, momentum=0.9), jax.random.PRNGKey(0), shape)


def make_batch(seed=0, n=6, shape=(8, 8, 3), classes=3):
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    return {
        "image": jax.random.normal(kx, (n, *shape)),
        "label": jax.random.randint(ky, (n,), 0, classes),
    }


class StepVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_and_no_jit_agree(self):
        state, batch = make_state(), make_batch()
        new_state, metrics = self.variant(train_step)(state, batch)
        ref_state, ref_metrics = jax.jit(train_step)(state, batch)
        chex.assert_trees_all_close(new_state.params, ref_state.params, atol=1e-6)
        chex.assert_trees_all_close(new_state.batch_stats, ref_state.batch_stats, atol=1e-6)
        chex.assert_trees_all_close(metrics, ref_metrics, atol=1e-6)
        assert int(new_state.step) == 1

    @chex.variants(with_jit=True, without_jit=True)
    def test_eval_step_sums(self):
        state, batch = make_state(), make_batch(n=5)
        batch["mask"] = jnp.array([1, 1, 1, 0, 0], jnp.float32)
        sums = self.variant(eval_step)(state, batch)
        assert float(sums["count"]) == 3.0
        assert 0.0 <= float(sums["correct"]) <= 3.0


def test_batch_stats_and_params_change():
    state = make_state()
    new_state, _ = jax.jit(train_step)(state, make_batch())
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new_state.params)
    assert all(jax.tree.leaves(changed))
    stats_changed = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), state.batch_stats, new_state.batch_stats
    )
    assert all(jax.tree.leaves(stats_changed))


def test_one_compile_per_input_shape():
    counted = chex.assert_max_traces(n=2)(train_step)
    step = jax.jit(counted)
    state = make_state()
    for seed in range(3):  # same shapes: one trace
        state, _ = step(state, make_batch(seed))
    state, _ = step(state, make_batch(0, n=10))  # new batch size: the second trace
    with pytest.raises(AssertionError):
        step(state, make_batch(0, n=12))  # a third shape exceeds n=2


def test_same_inputs_give_bit_identical_outputs_and_inputs_are_untouched():
    state, batch = make_state(), make_batch()
    before = jax.tree.map(np.array, (state, batch))
    step = jax.jit(train_step)
    out1 = jax.device_get(step(state, batch))
    out2 = jax.device_get(step(state, batch))
    chex.assert_trees_all_equal(out1, out2)
    chex.assert_trees_all_equal(jax.tree.map(np.array, (state, batch)), before)


def test_dropout_masks_change_with_the_step_but_are_reproducible():
    state, batch = make_state(), make_batch()
    step = jax.jit(train_step)
    _, m_a = step(state, batch)
    _, m_b = step(state.replace(step=state.step + 1), batch)
    _, m_c = step(state.replace(step=state.step + 1), batch)
    assert float(m_a["loss"]) != float(m_b["loss"])
    assert float(m_b["loss"]) == float(m_c["loss"])


def test_l2_weight_adds_decay_to_the_gradient():
    state, batch = make_state(), make_batch()
    plain, _ = jax.jit(train_step)(state, batch)
    decayed, _ = jax.jit(functools.partial(train_step, l2_weight=0.1))(state, batch)
    kernel = state.params["Dense_0"]["kernel"]
    # SGD with momentum: first step moves by lr * grad, and the L2 term adds 0.1 * w to grad
    np.testing.assert_allclose(
        decayed.params["Dense_0"]["kernel"] - plain.params["Dense_0"]["kernel"],
        -0.1 * 0.1 * kernel,
        atol=1e-6,
    )


def test_gradients_match_finite_differences():
    with jax.enable_x64(True):
        model = models.create("mlp", num_classes=3, widths=(5,), act="tanh", dtype=jnp.float64)
        x = jax.random.normal(jax.random.PRNGKey(1), (4, 6), jnp.float64)
        labels = jnp.array([0, 1, 2, 1])
        params = jax.tree.map(
            lambda p: p.astype(jnp.float64),
            model.init(jax.random.PRNGKey(0), x)["params"],
        )

        def loss(params):
            return jnp.mean(softmax_cross_entropy(model.apply({"params": params}, x), labels))

        check_grads(loss, (params,), order=2, modes=["rev"], eps=1e-4, atol=1e-6, rtol=1e-6)


def test_non_finite_batch_leaves_parameters_and_optimizer_unchanged():
    state, batch = make_state(), make_batch()
    step = jax.jit(train_step)
    state, _ = step(state, batch)  # a real step first, so the momentum is non-zero
    bad = dict(batch, image=batch["image"].at[0, 0, 0, 0].set(jnp.nan))
    new_state, metrics = step(state, bad)
    assert float(metrics["skipped"]) == 1.0
    chex.assert_trees_all_equal(new_state.params, state.params)
    chex.assert_trees_all_equal(new_state.opt_state, state.opt_state)
    chex.assert_trees_all_equal(new_state.batch_stats, state.batch_stats)
    assert int(new_state.step) == int(state.step) + 1
    _, good = step(new_state, batch)
    assert float(good["skipped"]) == 0.0

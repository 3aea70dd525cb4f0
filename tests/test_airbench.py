"""The airbench94 recipe's pure pieces (jaxdl.recipes.airbench94) and a tiny speedrun on real
CIFAR-10."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from experiments import cifar_speedrun
from jaxdl import models
from jaxdl.build import build
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError
from jaxdl.models.airbench import ConvGroup
from jaxdl.recipes import airbench94
from jaxdl.state import create_train_state
from jaxdl.tasks.classification import CLASSIFICATION


def test_whitening_kernel_whitens_patches():
    key = jax.random.PRNGKey(0)
    mixing = jax.random.normal(key, (3, 3)) + 2 * jnp.eye(3)  # correlated colour channels
    images = jax.random.normal(jax.random.PRNGKey(1), (64, 8, 8, 3)) @ mixing
    kernel = airbench94.whitening_kernel(images, kernel_size=2, eps=1e-8)
    assert kernel.shape == (2, 2, 3, 24)
    np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])
    out = jax.lax.conv_general_dilated(
        images, kernel[..., :12], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    ).reshape(-1, 12)
    covariance = out.T @ out / out.shape[0]
    np.testing.assert_allclose(covariance, np.eye(12), atol=2e-3)


def test_triangle_schedule():
    rates = airbench94.triangle(100)
    assert rates.shape == (101,)
    np.testing.assert_allclose([rates[0], rates[23], rates[100]], [0.2, 1.0, 0.07])
    assert np.argmax(rates) == 23


def test_param_groups_and_frozen_layers():
    model = models.create("airbench94")
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
    labels = traverse_util.flatten_dict(airbench94.param_labels(params))
    sizes = traverse_util.flatten_dict(jax.tree.map(np.size, params))
    total = {}
    for path, label in labels.items():
        total[label] = total.get(label, 0) + sizes[path]
    assert sum(total.values()) == 1_972_792
    assert total == {"frozen": 288 + 1152, "whiten_bias": 24, "norm_bias": 1152, "other": 1_970_176}

    recipe = airbench94.Recipe()
    tx = airbench94.optimizer(recipe, steps_per_epoch=2, total_steps=10)
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    moved = []
    for _ in range(8):  # the whitening bias trains for 3 epochs = 6 steps, then stops
        updates, state = tx.update(grads, state, params)
        moved.append(traverse_util.flatten_dict(jax.tree.map(lambda u: bool(jnp.any(u)), updates)))
    assert not any(m[("whiten", "conv", "kernel")] for m in moved)
    assert not any(m[("ConvGroup_0", "BatchNorm_0", "bn", "scale")] for m in moved)
    assert [m[("whiten", "conv", "bias")] for m in moved] == [True] * 6 + [False] * 2
    assert all(m[("Dense_0", "kernel")] for m in moved)


def test_lookahead_moves_state_and_average():
    model = models.create("airbench94")
    state = create_train_state(model, optax.sgd(0.1), jax.random.PRNGKey(0), (1, 32, 32, 3))
    average = jax.tree.map(jnp.zeros_like, (state.params, state.batch_stats))
    new_state, new_average = airbench94.lookahead(state, average, 0.25)
    kernel = state.params["Dense_0"]["kernel"]
    np.testing.assert_allclose(new_average[0]["Dense_0"]["kernel"], 0.75 * kernel, rtol=1e-6)
    np.testing.assert_allclose(new_state.params["Dense_0"]["kernel"], 0.75 * kernel, rtol=1e-6)
    assert airbench94.lookahead_decay(10, 10) == pytest.approx(0.95**5)


def test_epoch_images_translate_and_alternate_flips():
    images = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
    padded = airbench94.prepare_train_images(jax.random.PRNGKey(1), images, translate=0)
    even = airbench94.epoch_images(jax.random.PRNGKey(2), padded, 0, translate=0)
    odd = airbench94.epoch_images(jax.random.PRNGKey(3), padded, 1, translate=0)
    np.testing.assert_allclose(odd, even[:, :, ::-1, :])  # every image the other way round
    padded = airbench94.prepare_train_images(jax.random.PRNGKey(1), images, translate=2)
    assert padded.shape == (4, 12, 12, 3)
    shifted = airbench94.epoch_images(jax.random.PRNGKey(2), padded, 0, translate=2)
    assert shifted.shape == (4, 8, 8, 3)


def test_tta_of_a_flip_and_shift_blind_model_is_the_plain_prediction():
    images = jnp.ones((2, 8, 8, 3)) * jnp.arange(2.0)[:, None, None, None]
    predict = lambda x: jnp.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], -1)
    np.testing.assert_allclose(airbench94.tta_logits(predict, images), predict(images), rtol=1e-6)


@pytest.mark.slow
def test_frozen_whitening_zeroes_only_the_whitening_gradients():
    model = models.create("airbench94")
    frozen = model.clone(freeze_whitening=True)
    images = jax.random.normal(jax.random.PRNGKey(1), (8, 32, 32, 3))
    labels = jnp.arange(8) % 10
    variables = model.init(jax.random.PRNGKey(0), images)

    def loss(params, net):
        logits, _ = net.apply(
            {**variables, "params": params}, images, train=True, mutable=["batch_stats"]
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads, frozen_grads = (
        traverse_util.flatten_dict(jax.grad(loss)(variables["params"], net))
        for net in (model, frozen)
    )
    np.testing.assert_allclose(loss(variables["params"], frozen), loss(variables["params"], model))
    for path, grad in grads.items():
        if path[0] == "whiten":
            assert jnp.any(grad != 0) and not jnp.any(frozen_grads[path] != 0), path
        else:
            np.testing.assert_allclose(frozen_grads[path], grad, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_speedrun_tiny(tmp_path, data_dir):
    # 5 epochs of 4 steps: the lookahead average starts at step 5, moves at steps 10, 15 and 20,
    # and the run ends on it, all through the step's donated buffers; epochs 3 and 4 take the
    # step with the whitening layer frozen.
    args = ["--seeds", "2", "--epochs", "5", "--batch_size", "128", "--train_limit", "512"]
    results = cifar_speedrun.main(
        [*args, "--test_limit", "500", "--quiet", "--workdir", str(tmp_path)]
    )
    runs = results["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and all(r["steps"] == 20 for r in runs)
    assert all(np.isfinite(r["last_epoch_train_loss"]) for r in runs)
    assert all(0.15 < r["test_accuracy"] <= 1 for r in runs)  # chance is 0.10
    assert (tmp_path / "results.json").exists()
    with pytest.raises(ConfigError, match="--seeds 0"):
        cifar_speedrun.main(["--seeds", "0"])


def test_airbench_resnet_adds_a_residual_block_to_each_group():
    model = models.create("airbench_resnet")
    images = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(0), images)
    sizes = jax.tree.map(np.size, variables["params"])
    # airbench94's 1,972,792 + one 3x3 conv per group (64^2 + 2 x 256^2, x 9) + its BatchNorm
    assert sum(jax.tree.leaves(sizes)) == 1_972_792 + 9 * (64**2 + 2 * 256**2) + 2 * 576
    assert sorted(variables["params"]["ConvGroup_1"]) == [
        *(f"BatchNorm_{i}" for i in range(3)),
        *(f"Conv_{i}" for i in range(3)),
    ]
    assert model.apply(variables, images).shape == (2, 10)


def test_residual_group_adds_its_block_to_the_pooled_activations():
    group = ConvGroup(8, bn_momentum=0.6, residual=True)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 4))
    variables = group.init(jax.random.PRNGKey(0), x, train=False)
    out, captured = group.apply(variables, x, train=False, capture_intermediates=True)
    inner = captured["intermediates"]
    gelu = lambda name: nn.gelu(inner[name]["__call__"][0], approximate=False)
    assert out.shape == (2, 4, 4, 8)
    np.testing.assert_allclose(out, gelu("BatchNorm_0") + gelu("BatchNorm_2"), rtol=1e-6)
    plain = ConvGroup(8, bn_momentum=0.6)
    plain_vars = plain.init(jax.random.PRNGKey(0), x, train=False)
    assert len(plain_vars["params"]) == 4  # two convs, two BatchNorms: airbench94's group


def test_build_sets_the_whitening_layer_from_the_training_images(data_dir, tmp_path):
    config = TrainConfig(
        dataset="cifar10",
        data_dir=data_dir,
        model="airbench_resnet",
        batch_size=64,
        train_limit=700,
        val_size=100,
        test_limit=10,
        optimizer="airbench",
        schedule="triangle",
        lookahead_every=5,
    )
    run = build(dataclasses.replace(config, workdir=str(tmp_path)), CLASSIFICATION)
    images = run.preprocess.inputs(jnp.asarray(run.train.images))
    expected = airbench94.whitening_kernel(images)
    kernel = run.state.params["whiten"]["conv"]["kernel"]
    np.testing.assert_allclose(kernel, expected, rtol=1e-5, atol=1e-6)
    # the lookahead average starts on the data-set parameters, not the random ones
    average = run.state.opt_state[-1].average
    np.testing.assert_array_equal(average["whiten"]["conv"]["kernel"], kernel)
    again = run.with_epochs(3).state.params["whiten"]["conv"]["kernel"]
    np.testing.assert_array_equal(again, kernel)

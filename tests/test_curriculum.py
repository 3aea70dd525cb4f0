"""The curriculum experiments, each in a tiny version on real data, and the library pieces they
add (full-batch gradient descent, least squares, polynomial features, IoU, digit canvases,
per-layer gradient norms, per-pixel evaluation)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import (
    activations,
    cifar_zoo,
    ensemble,
    lenet_mnist,
    linear_regression,
    logistic_regression,
    multitask,
    regularization,
    segmentation,
    softmax_regression,
)
from jaxdl import models
from jaxdl.course.diagnostics import kernel_gradient_norms
from jaxdl.course.fullbatch import gradient_descent, least_squares, polynomial_features
from jaxdl.data.compose import compose_digits
from jaxdl.data.tabular import load_table, standardize, train_test_split
from jaxdl.errors import ConfigError, NonFiniteError
from jaxdl.losses import softmax_cross_entropy
from jaxdl.metrics import intersection_over_union
from jaxdl.state import create_train_state
from jaxdl.step import eval_step
from jaxdl.tasks.multihead import CIFAR10_VEHICLE, MultiHead
from tests.test_cifar_resnet import assert_real_png

TINY_CIFAR = ["--train_limit", "600", "--test_limit", "300", "--epochs", "1", "--batch_size", "64"]
TINY_MNIST = ["--train_limit", "1000", "--test_limit", "500", "--epochs", "3", "--quiet"]


# --- library pieces -------------------------------------------------------------------------


def test_gradient_descent_reaches_least_squares():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5]) + 3.0 + 0.1 * rng.normal(size=200)).astype(np.float32)
    loss = lambda p, d: jnp.mean((d[0] @ p["w"] + p["b"] - d[1]) ** 2)
    init = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    params, losses = gradient_descent(loss, init, (x, y), optax.sgd(0.1), 500)
    weights, bias = least_squares(x, y)
    np.testing.assert_allclose(params["w"], weights, atol=1e-4)
    assert abs(float(params["b"]) - bias) < 1e-4
    assert losses.shape == (501,) and losses[0] > 10 * losses[-1]
    # the closed form is the minimum: every gradient-descent loss is at or above it
    assert float(losses.min()) >= np.mean((x @ weights + bias - y) ** 2) - 1e-5


def test_polynomial_features_degree_two():
    x = jnp.array([[2.0, 3.0]])
    np.testing.assert_allclose(polynomial_features(x, 2), [[2, 3, 4, 6, 9]])
    assert polynomial_features(x, 3).shape == (1, 9)
    with pytest.raises(ValueError, match="2 input features"):
        polynomial_features(jnp.ones((1, 3)), 2)


def test_tabular_split_and_standardize():
    table = load_table("diabetes")
    assert table.features.shape == (442, 10) and table.feature_names[2] == "bmi"
    train, test = train_test_split(table, 0.2, seed=0)
    assert (len(train), len(test)) == (354, 88)
    a, b = standardize(train.features, test.features)
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(a.std(0), 1, atol=1e-4)
    assert abs(float(b.mean())) < 0.5  # test rows use the training statistics
    with pytest.raises(ConfigError, match="unknown tabular dataset 'wine'"):
        load_table("wine")


def test_intersection_over_union_by_hand():
    # true class on rows: class 0 has 3 pixels, 2 right; class 1 has 1 pixel, right;
    # one class-0 pixel predicted as 1; class 2 never appears nor is predicted
    matrix = np.array([[2, 1, 0], [0, 1, 0], [0, 0, 0]])
    iou = intersection_over_union(matrix)
    np.testing.assert_allclose(iou[:2], [2 / 3, 1 / 2])
    assert np.isnan(iou[2])


def test_compose_digits_masks_follow_digit_pixels():
    rng = np.random.default_rng(0)
    digits = (rng.random((5, 28, 28, 1)) * 255).astype(np.uint8)
    labels = np.arange(5, dtype=np.int32)
    images, masks = compose_digits(digits, labels, 20, canvas=40, digits_per_canvas=2, seed=1)
    assert images.shape == (20, 40, 40, 1) and masks.shape == (20, 40, 40)
    assert set(np.unique(masks)) <= set(range(6))
    assert np.all(images[..., 0][masks > 0] > 96)  # a digit pixel is a bright pixel
    assert np.all(masks[images[..., 0] == 0] == 0)  # an empty pixel is background
    again, _ = compose_digits(digits, labels, 20, canvas=40, digits_per_canvas=2, seed=1)
    np.testing.assert_array_equal(images, again)
    with pytest.raises(ConfigError, match="canvas 20 is smaller"):
        compose_digits(digits, labels, 1, canvas=20)


def test_gradient_norms_vanish_through_sigmoid_layers():
    images = jax.random.normal(jax.random.PRNGKey(0), (64, 28, 28, 1))
    labels = jnp.arange(64) % 10
    norms = {}
    for act in ("sigmoid", "relu"):
        model = models.create(
            "mlp", num_classes=10, widths=(64,) * 6, act=act, weight_init="xavier"
        )
        variables = model.init(jax.random.PRNGKey(1), images[:1])
        named = kernel_gradient_norms(model, variables, images, labels)
        assert [name for name, _ in named] == [f"Dense_{i}" for i in range(7)]
        norms[act] = [n for _, n in named]
    # each sigmoid layer scales gradients by at most 1/4: the first layer's is far smaller
    assert norms["sigmoid"][0] < 0.01 * norms["sigmoid"][-1]
    assert norms["relu"][0] > 0.1 * norms["relu"][-1]


def test_eval_step_counts_pixels_for_segmentation():
    model = models.create("fcn", num_classes=3, stage_sizes=(1, 1), widths=(4, 8))
    state = create_train_state(model, optax.sgd(0.1), jax.random.PRNGKey(0), (1, 8, 8, 1))
    batch = {
        "image": jnp.ones((2, 8, 8, 1)),
        "label": jnp.zeros((2, 8, 8), jnp.int32),
        "mask": jnp.array([1.0, 0.0]),
    }
    sums = eval_step(state, batch)
    assert float(sums["count"]) == 64  # the one real example's 8 x 8 pixels
    assert 0 <= float(sums["correct"]) <= 64


def test_multihead_objective_adds_head_losses():
    objective = MultiHead((10, 2), (None, CIFAR10_VEHICLE), (1.0, 0.5))
    logits = jax.random.normal(jax.random.PRNGKey(0), (4, 12))
    labels = jnp.array([0, 3, 8, 9])  # airplane, cat, ship, truck
    heads = objective.split(logits)
    assert [h.shape for h in heads] == [(4, 10), (4, 2)]
    np.testing.assert_array_equal(objective.head_labels(labels)[1], [1, 0, 1, 1])
    losses, hits = objective(logits, labels)
    expected = softmax_cross_entropy(heads[0], labels) + 0.5 * softmax_cross_entropy(
        heads[1], jnp.array([1, 0, 1, 1])
    )
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    np.testing.assert_array_equal(hits, jnp.argmax(heads[0], -1) == labels)
    with pytest.raises(ConfigError, match="2 heads need as many"):
        MultiHead((10, 2), (None,), (1.0, 1.0))
    with pytest.raises(ConfigError, match="outside a head of 2 classes"):
        MultiHead((2,), ((0, 2),), (1.0,))


# --- the experiments, tiny ------------------------------------------------------------------


def test_linear_regression_matches_closed_form(tmp_path):
    results = linear_regression.main(["--workdir", str(tmp_path)])
    assert results["max_coefficient_difference"] < 1e-3
    assert 0.3 < results["test_r2"] < 0.7  # diabetes: a linear model explains about half
    # raw features: the largest stable step leaves the small-scale directions unlearned
    assert results["raw_features_final_train_mse"] > 1.05 * results["standardized_final_train_mse"]
    finals = list(results["sweep_final_train_mse"].values())
    assert finals[1] < finals[0] and not finals[2] < finals[0]  # slow, good, diverging
    for name in ("normalization.png", "lr_sweep.png"):
        assert_real_png(tmp_path / "plots" / name)


def test_logistic_regression_boundaries(tmp_path):
    results = logistic_regression.main(["--steps", "1500", "--workdir", str(tmp_path)])
    assert results["breast_cancer_test_accuracy"] > 0.93
    assert results["circles_linear_test_accuracy"] < 0.7  # a line cannot split circles
    assert results["circles_polynomial_test_accuracy"] > 0.95
    for name in ("breast_cancer_boundary.png", "circles_boundaries.png"):
        assert_real_png(tmp_path / "plots" / name)


@pytest.mark.parametrize("experiment", [softmax_regression, lenet_mnist])
@pytest.mark.slow
def test_mnist_classifiers_tiny(experiment, tmp_path, data_dir):
    results = experiment.main([*TINY_MNIST, "--save_predictions", "--workdir", str(tmp_path)])
    assert results["test_count"] == 500
    assert results["test_accuracy"] > 0.6  # three epochs on 900 digits; chance is 0.1
    probabilities = np.load(tmp_path / "test_probabilities.npy")
    assert probabilities.shape == (500, 10)
    np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)


@pytest.mark.slow
def test_activations_tiny(tmp_path, data_dir):
    args = ["--activations", "sigmoid,relu", "--depth", "4", "--width", "32", *TINY_MNIST]
    results = activations.main([*args, "--workdir", str(tmp_path)])
    runs = {(r["activation"], r["init"]): r for r in results["runs"]}
    assert set(runs) == {(a, i) for a in ("sigmoid", "relu") for i in ("xavier", "he")}
    sigmoid = runs[("sigmoid", "xavier")]
    assert sigmoid["first_layer_gradient_norm"] < sigmoid["last_layer_gradient_norm"]
    # plain SGD through 4 sigmoid layers barely starts in 3 short epochs; ReLU does
    assert runs[("relu", "he")]["test_accuracy"] > max(0.25, sigmoid["test_accuracy"])


@pytest.mark.slow
def test_segmentation_tiny(tmp_path, data_dir):
    args = ["--train_canvases", "600", "--test_canvases", "100", "--canvas", "32", "--epochs", "4"]
    results = segmentation.main(
        [
            *args,
            "--train_limit",
            "2000",
            "--test_limit",
            "500",
            "--quiet",
            "--workdir",
            str(tmp_path),
        ]
    )
    # four epochs on 540 canvases learn where the digits are (which digit comes later)
    assert results["test_pixel_accuracy"] > 0.7
    assert results["test_iou_per_class"]["background"] > 0.8
    assert 0 < results["test_mean_iou"] <= 1
    assert_real_png(tmp_path / "plots" / "segmentation.png")
    assert (
        json.loads((tmp_path / "results.json").read_text())["test_mean_iou"]
        == results["test_mean_iou"]
    )


def test_ensemble_tiny(tmp_path, data_dir):
    results = ensemble.main(["--members", "2", *TINY_MNIST, "--workdir", str(tmp_path)])
    members, ensembles = results["member_test_accuracies"], results["ensemble_test_accuracies"]
    assert len(members) == len(ensembles) == 2 and ensembles[0] == members[0]
    assert ensembles[1] >= min(members) - 0.02  # averaging two decent models is no worse
    assert_real_png(tmp_path / "plots" / "ensemble.png")
    with pytest.raises(ConfigError, match="at least 2 members"):
        ensemble.main(["--members", "1", "--workdir", str(tmp_path)])


@pytest.mark.slow
def test_multitask_tiny(tmp_path, data_dir):
    results = multitask.main(["--model", "vgg_small", *TINY_CIFAR, "--workdir", str(tmp_path)])
    # one epoch on 540 images: the plumbing, not the learning (chance 0.1; "animal" always: 0.6)
    assert 0.05 < results["class_multi_task"] <= 1 and 0.05 < results["class_single_task"] <= 1
    assert results["super_multi_task"] > 0.5 and results["super_single_task"] > 0.5
    assert {"multitask", "class_only", "super_only"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.slow
def test_regularization_tiny(tmp_path, data_dir):
    args = ["--settings", "none,dropout,early stopping", *TINY_CIFAR, "--epochs", "2"]
    results = regularization.main([*args, "--workdir", str(tmp_path)])
    assert [r["setting"] for r in results["runs"]] == ["none", "dropout", "early stopping"]
    assert all(0 < r["test_accuracy"] <= 1 for r in results["runs"])
    assert_real_png(tmp_path / "plots" / "curves.png")
    with pytest.raises(ConfigError, match="unknown --settings mixup"):
        regularization.main(["--settings", "mixup", "--workdir", str(tmp_path)])


@pytest.mark.slow
def test_cifar_zoo_tiny(tmp_path, data_dir):
    args = ["--models", "squeezenet_cifar,vgg_small", *TINY_CIFAR, "--workdir", str(tmp_path)]
    results = cifar_zoo.main(args)
    rows = {r["model"]: r for r in results["runs"]}
    assert rows["vgg_small"]["parameters"] == 337_050
    assert rows["squeezenet_cifar"]["forward_gflops"] > 0
    assert all(r["epoch_seconds"] > 0 and 0 < r["test_accuracy"] <= 1 for r in rows.values())


def test_cifar_zoo_reports_a_diverged_model_and_goes_on(tmp_path, monkeypatch):
    trained = []

    def fake_train(config):
        trained.append(config.model)
        if config.model == "squeezenet_cifar":
            raise NonFiniteError("20 consecutive steps had a non-finite loss or gradient")
        return {
            "epochs_run": 1, "train_seconds": 2.0, "test_accuracy": 0.5,
            "parameters": 269_722, "images_per_second": 9.0, "compile_seconds": 1.0,
        }  # fmt: skip

    monkeypatch.setattr(cifar_zoo, "train_and_evaluate", fake_train)
    results = cifar_zoo.main(["--models", "squeezenet_cifar,resnet20", "--workdir", str(tmp_path)])
    assert trained == ["squeezenet_cifar", "resnet20"]
    rows = {r["model"]: r for r in results["runs"]}
    assert (
        rows["squeezenet_cifar"]["diverged"] and rows["squeezenet_cifar"]["parameters"] == 727_626
    )
    assert not rows["resnet20"]["diverged"] and rows["resnet20"]["test_accuracy"] == 0.5

"""Learning without labels: the transposed convolution, the autoencoder and VAE models and
objectives, the unsupervised metrics against hand-computed cases, and tiny end-to-end runs
of `experiments.autoencoder` and `experiments.vae`."""

from __future__ import annotations

import json
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import roc_auc_score

from jaxdl import models
from jaxdl.config import TrainConfig
from jaxdl.data.augment import binarize_once, grayscale, random_binarize, resize
from jaxdl.errors import ConfigError
from jaxdl.metrics import auroc, clustering_accuracy, frechet_distance, totals_to_means
from jaxdl.models.generative import base_size
from jaxdl.nn.conv import ConvTranspose
from jaxdl.state import TrainState, count_params
from jaxdl.step import eval_step
from jaxdl.tasks.classification import load_splits
from jaxdl.tasks.reconstruction import (
    gaussian_kl,
    importance_weighted_bounds,
    mean_squared_error,
    negative_elbo,
)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("kernel, stride", [(4, 2), (3, 2), (3, 1), (5, 3), (1, 2)])
@pytest.mark.parametrize("layers", ["plain", "fast", "onednn"])
def test_conv_transpose_equals_flax_in_values_and_gradients(padding, kernel, stride, layers):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 5, 3))
    reference = nn.ConvTranspose(4, (kernel, kernel), (stride, stride), padding=padding)
    variables = reference.init(jax.random.PRNGKey(1), x)
    ours = ConvTranspose(4, kernel, stride, padding=padding, layers=layers)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(1), x)) == jax.tree.map(
        jnp.shape, variables
    )
    np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x), atol=1e-5)

    def loss(module):
        return lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))

    ours_grads = jax.grad(loss(ours), argnums=(0, 1))(variables, x)
    reference_grads = jax.grad(loss(reference), argnums=(0, 1))(variables, x)
    chex.assert_trees_all_close(ours_grads, reference_grads, atol=1e-4)


def test_conv_transpose_refuses_unknown_padding():
    with pytest.raises(ConfigError, match="'SAME' or 'VALID'"):
        ConvTranspose(2, padding="FULL").init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 1)))


@pytest.mark.parametrize("size, expected", [(28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (14, (7, 1))])
def test_base_size_halves_to_a_small_map(size, expected):
    assert base_size(size) == expected


def test_base_size_refuses_sizes_that_do_not_halve():
    with pytest.raises(ConfigError, match="does not halve"):
        base_size(27)


def _params(name: str, shape, **options):
    model = models.create(name, **options)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape)))["params"]


def test_autoencoder_and_vae_parameter_counts_follow_the_formula():
    # encoder: 3x3 convs 1->32->64 (with biases), Dense 7·7·64 -> code;
    # decoder: Dense code -> 7·7·64, 4x4 transposed convs 64->32->1 (with biases)
    conv = lambda k, i, o: k * k * i * o + o  # noqa: E731
    dense = lambda i, o: i * o + o  # noqa: E731
    for code in (2, 32):
        encoder = conv(3, 1, 32) + conv(3, 32, 64) + dense(7 * 7 * 64, code)
        decoder = dense(code, 7 * 7 * 64) + conv(4, 64, 32) + conv(4, 32, 1)
        params = _params("conv_autoencoder", (1, 28, 28, 1), num_classes=1, code=code)
        assert count_params(params) == encoder + decoder
        # the VAE's encoder ends in 2 x latent outputs: the mean and the log-variance
        vae = _params("vae", (1, 28, 28, 1), num_classes=1, latent=code)
        assert (
            count_params(vae)
            == encoder + dense(7 * 7 * 64, 2 * code) - dense(7 * 7 * 64, code) + decoder
        )


def test_autoencoder_refuses_images_of_another_size():
    model = models.create("conv_autoencoder", num_classes=1, image_size=28)
    with pytest.raises(ConfigError, match="built for 28x28 images but got 32x32"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))


def test_vae_samples_only_with_a_sample_stream_and_per_example_keys():
    model = models.create("vae", num_classes=1, latent=4, image_size=8, width=4)
    images = jax.random.uniform(jax.random.PRNGKey(0), (3, 8, 8, 1))
    variables = model.init(jax.random.PRNGKey(1), images)
    mean_only = model.apply(variables, images)
    again = model.apply(variables, images)
    chex.assert_trees_all_equal(mean_only, again)  # no stream: the latent's mean
    sampled = model.apply(variables, images, rngs={"sample": jax.random.PRNGKey(2)})
    assert not np.allclose(sampled["logits"], mean_only["logits"])
    # an example's noise depends on its position, not on the batch it came in
    first = model.apply(variables, images[:1], rngs={"sample": jax.random.PRNGKey(2)})
    np.testing.assert_allclose(first["logits"][0], sampled["logits"][0], atol=1e-6)


def test_gaussian_kl_matches_the_closed_form():
    mean = jnp.array([[0.0, 1.0], [0.5, -2.0]])
    log_variance = jnp.log(jnp.array([[1.0, 4.0], [0.25, 1.0]]))
    expected = [
        0.5 * ((1 + 0 - 1 - 0) + (4 + 1 - 1 - math.log(4))),
        0.5 * ((0.25 + 0.25 - 1 - math.log(0.25)) + (1 + 4 - 1 - 0)),
    ]
    np.testing.assert_allclose(gaussian_kl(mean, log_variance), expected, rtol=1e-6)


def test_reparameterised_elbo_gradient_matches_finite_differences():
    binary = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 1)) > 0.5
    with jax.enable_x64(True):
        model = models.create(
            "vae", num_classes=1, latent=2, image_size=8, width=2, dtype=jnp.float64
        )
        images = binary.astype(jnp.float64)
        params = model.init(jax.random.PRNGKey(1), images)["params"]
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        key = jax.random.PRNGKey(3)

        def loss(params):
            outputs = model.apply({"params": params}, images, rngs={"sample": key})
            return jnp.mean(negative_elbo(outputs, images)[0])

        grads = jax.grad(loss)(params)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        flat_grads, _ = jax.flatten_util.ravel_pytree(grads)
        rng = np.random.default_rng(0)
        for index in rng.choice(flat.size, 12, replace=False):
            step = jnp.zeros_like(flat).at[index].set(1e-6)
            numeric = (loss(unravel(flat + step)) - loss(unravel(flat - step))) / 2e-6
            np.testing.assert_allclose(flat_grads[index], numeric, rtol=1e-5, atol=1e-7)


def test_importance_weighted_estimate_is_the_tighter_bound():
    model = models.create("vae", num_classes=1, latent=2, image_size=8, width=4)
    images = (jax.random.uniform(jax.random.PRNGKey(0), (6, 8, 8, 1)) > 0.5).astype(jnp.float32)
    variables = model.init(jax.random.PRNGKey(1), images)
    bounds = importance_weighted_bounds(
        model.apply, variables, images, jax.random.PRNGKey(2), samples=200
    )
    np.testing.assert_allclose(bounds["negative_elbo"], bounds["reconstruction"] + bounds["kl"])
    assert np.all(bounds["log_likelihood"] >= -bounds["negative_elbo"])
    # one sample: the estimate is log p(x, z) - log q(z | x) of that sample, unbiased for the
    # ELBO: over many keys its mean approaches -negative_elbo
    single = jax.vmap(
        lambda key: importance_weighted_bounds(model.apply, variables, images, key, samples=1)
    )(jax.random.split(jax.random.PRNGKey(4), 4000))
    np.testing.assert_allclose(
        single["log_likelihood"].mean(0), -bounds["negative_elbo"], rtol=0.01
    )


def test_mean_squared_error_and_named_figures_through_eval_step():
    class Halve(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return 0.5 * x

    images = jnp.ones((3, 2, 2, 1))
    losses, extra = mean_squared_error(jnp.zeros_like(images), images)
    np.testing.assert_allclose(losses, [1.0, 1.0, 1.0])
    assert extra == {}
    state = TrainState.create(apply_fn=Halve().apply, params={}, tx=optax.sgd(0.1), batch_stats={})
    batch = {"image": images, "label": jnp.zeros(3, jnp.int32), "mask": jnp.array([1.0, 1, 0])}
    sums = eval_step(state, batch, objective=mean_squared_error, target="image")
    means = totals_to_means([sums])
    assert means == {"loss": 0.25, "count": 2}


def test_clustering_accuracy_takes_the_best_matching():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    clusters = np.array([5, 5, 7, 7, 7, 9, 9, 5])  # 5->0, 7->1, 9->2: 2 + 2 + 2 hits
    assert clustering_accuracy(labels, clusters) == 6 / 8
    assert clustering_accuracy(labels, (labels + 1) % 3) == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        clustering_accuracy(labels, clusters[:-1])


def test_whitened_codes_cluster_alike_under_any_invertible_linear_map():
    from jaxdl.tasks.reconstruction import kmeans_accuracy, whiten

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    centres = rng.normal(size=(3, 4)) * 3
    points = centres[labels] + rng.normal(size=(300, 4))
    white = whiten(points)
    np.testing.assert_allclose(white.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(np.cov(white.T, bias=False), np.eye(4), atol=1e-9)
    # a code a decoder could read as well: stretched a thousandfold along one direction,
    # which misleads plain k-means and not the whitened one
    stretch = np.diag([1000.0, 1, 1, 1]) @ np.linalg.qr(rng.normal(size=(4, 4)))[0]
    other = points @ stretch
    # whitened, both are the same points up to a rotation: the same distances (Mahalanobis')
    distances = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.testing.assert_allclose(distances(whiten(other)), distances(white), atol=1e-6)
    whitened = kmeans_accuracy(whiten(other), labels, 3, seed=0)
    assert whitened == kmeans_accuracy(white, labels, 3, seed=0) > 0.9
    assert kmeans_accuracy(other, labels, 3, seed=0) < whitened


def test_auroc_counts_pairs_and_ties():
    assert auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert auroc([0.1, 0.5], [0.5, 0.9]) == (1 + 0.5 + 1 + 1) / 4
    rng = np.random.default_rng(0)
    normal, anomalous = rng.normal(size=300), rng.normal(0.7, size=200)
    expected = roc_auc_score(np.r_[np.zeros(300), np.ones(200)], np.r_[normal, anomalous])
    assert auroc(normal, anomalous) == pytest.approx(expected, abs=1e-12)


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # one dimension: (m1 - m2)^2 + s1^2 + s2^2 - 2 s1 s2 = (m1 - m2)^2 + (s1 - s2)^2
    x, y = np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])  # means 1, 3; variances 2, 8
    assert frechet_distance(x, y) == pytest.approx(4 + (math.sqrt(2) - math.sqrt(8)) ** 2)
    shifted = a + np.array([1.0, 2.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(5.0, abs=1e-6)


def test_binarisation_grey_and_resize():
    images = np.full((2000, 2, 2, 1), 64, np.uint8)
    once = binarize_once(images, seed=0)
    assert set(np.unique(once)) <= {0, 255}
    assert once.mean() / 255 == pytest.approx(64 / 255, abs=0.02)
    np.testing.assert_array_equal(once, binarize_once(images, seed=0))
    drawn = random_binarize(jax.random.PRNGKey(0), jnp.full((1000, 2, 2, 1), 0.25))
    assert set(np.unique(np.asarray(drawn))) <= {0.0, 1.0}
    assert float(drawn.mean()) == pytest.approx(0.25, abs=0.02)
    rgb = np.array([[[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]]], np.uint8)
    np.testing.assert_array_equal(grayscale(rgb)[0, ..., 0], [[76, 150], [29, 255]])
    assert resize(np.zeros((3, 32, 32, 1), np.uint8), 28).shape == (3, 28, 28, 1)


@pytest.mark.slow
def test_autoencoder_experiment_learns_and_reports_every_figure(tmp_path, data_dir, capsys):
    from experiments import autoencoder

    results = autoencoder.main(
        [
            "--epochs",
            "4",
            "--train_limit",
            "1200",
            "--test_limit",
            "300",
            "--batch_size",
            "16",
            "--lr",
            "5e-4",
            "--width",
            "16",
            "--quiet",
            "--code",
            "8",
            "--workdir",
            str(tmp_path / "ae"),
        ]
    )
    out = capsys.readouterr().out
    for line in (
        "clustering accuracy, k-means on the codes:",
        "AUROC digit 9 vs other digits:",
        "AUROC MNIST vs grey CIFAR-10:",
        "PCA test reconstruction MSE:",
    ):
        assert line in out
    assert out.strip().splitlines()[-1].startswith("test reconstruction MSE: ")
    # it learned: well below the error of a dead decoder, which outputs black everywhere
    _, _, test = load_splits(TrainConfig(dataset="mnist", model="mlp", test_limit=300))
    assert results["test_mse"] < 0.8 * np.mean(np.square(test.images / 255.0))
    assert 0.0 <= results["clustering_accuracy_codes"] <= 1.0
    saved = json.loads((tmp_path / "ae" / "results.json").read_text())
    assert saved["pca_components"] == 8 and "auroc_held_out_digit" in saved
    plots = {p.name for p in (tmp_path / "ae" / "plots").iterdir()}
    assert {"reconstructions.png", "codes_tsne.png", "anomaly_scores.png", "curves.png"} <= plots


def test_autoencoder_refuses_a_digit_that_is_not_a_class(tmp_path, data_dir):
    from experiments import autoencoder

    with pytest.raises(ConfigError, match="--anomaly_digit 12 is not a class"):
        autoencoder.main(["--anomaly_digit", "12", "--workdir", str(tmp_path / "ae")])


def test_vae_experiment_learns_and_reports_both_bounds(tmp_path, data_dir, capsys):
    from experiments import vae

    results = vae.main(
        [
            "--epochs",
            "3",
            "--train_limit",
            "1200",
            "--test_limit",
            "200",
            "--batch_size",
            "32",
            "--width",
            "8",
            "--quiet",
            "--importance_samples",
            "10",
            "--workdir",
            str(tmp_path / "vae"),
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("test negative ELBO: ") and out[-1].endswith(" nats")
    # 784 binary pixels at p = 1/2 cost 543 nats; the trained model is far below
    assert results["test_negative_elbo"] < 300
    assert results["test_log_likelihood_iw"] >= -results["test_negative_elbo"]
    assert results["test_negative_elbo"] == pytest.approx(
        results["test_reconstruction"] + results["test_kl"]
    )
    plots = {p.name for p in (tmp_path / "vae" / "plots").iterdir()}
    assert {"samples.png", "interpolation.png", "reconstructions.png", "curves.png"} <= plots

"""Learning without labels: an autoencoder scored by reconstruction, clustering and anomaly
detection against PCA, and a variational autoencoder scored by its evidence lower bound.

Both reconstruct their input, so their steps are every classifier's with another objective
and `target="image"`: pixels in [0, 1] (`normalization`), the batch's image as the target.

Autoencoding (`python -m experiments.autoencoder`): mean squared error per pixel. On the test
split, each figure beside the same figure of PCA with as many components as the code has,
fitted on the same training images: the reconstruction MSE; k-means (k = 10, 10 starts)
clustering accuracy on the codes (whitened: `whiten`), on the raw pixels and on the PCA codes
(as they are and whitened); the AUROC of
telling anomalies by reconstruction error — a digit held out of training against the other
digits, and MNIST against grey-scaled CIFAR-10 test images resized to 28x28.

VariationalAutoencoding (`python -m experiments.vae`): dynamically binarised MNIST (a fresh
Bernoulli draw of every training image each epoch; validation and test images binarised once,
seeded), a Bernoulli decoder, the negative ELBO in nats split into reconstruction and KL
terms, and the importance-weighted estimate of the test log-likelihood (Burda et al. 2016).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl import data as data_lib
from jaxdl.config import TrainConfig
from jaxdl.data.augment import Augmentation, binarize_once, grayscale, resize
from jaxdl.data.device import DeviceDataset, Preprocess, eval_batches
from jaxdl.data.sources import ArrayDataset
from jaxdl.errors import ConfigError
from jaxdl.loop import Evaluator, Selection, log
from jaxdl.metrics import auroc, clustering_accuracy
from jaxdl.plots.curves import plot_curves
from jaxdl.plots.generative import (
    plot_codes_2d,
    plot_image_grid,
    plot_reconstructions,
    plot_score_histograms,
)
from jaxdl.state import model_variables
from jaxdl.tasks.classification import Classification, evaluate, load_splits

if TYPE_CHECKING:
    from jaxdl.build import Run


def _at_least_f32(x: jax.Array):
    """float32 for bfloat16 outputs, float64 kept (gradient checks run in float64)."""
    return jnp.promote_types(x.dtype, jnp.float32)


def mean_squared_error(
    reconstructions: jax.Array, images: jax.Array, label_smoothing: float = 0.0
) -> tuple[jax.Array, dict]:
    """The objective of an autoencoder: per-example mean squared error f32[B] over the pixels
    of reconstructions and images f32[B, H, W, C]; no other figures."""
    error = jnp.square(reconstructions.astype(_at_least_f32(reconstructions)) - images)
    return jnp.mean(error.reshape(error.shape[0], -1), axis=-1), {}


def gaussian_kl(mean: jax.Array, log_variance: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_variance)) || N(0, I)) in nats per example, from f32[B, L]."""
    return 0.5 * jnp.sum(jnp.exp(log_variance) + jnp.square(mean) - 1.0 - log_variance, -1)


def bernoulli_nll(logits: jax.Array, images: jax.Array) -> jax.Array:
    """-log p(images | logits) in nats per example f32[...], summed over the last three axes
    (H, W, C); images hold 0s and 1s (or intensities: the cross-entropy)."""
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, images), axis=(-3, -2, -1))


def negative_elbo(
    outputs: dict[str, jax.Array], images: jax.Array, label_smoothing: float = 0.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The objective of a VAE: per-example negative evidence lower bound f32[B] in nats, the
    Bernoulli reconstruction term of the sampled latent plus the analytic KL term, and both
    terms by name."""
    logits, mean = outputs["logits"], outputs["mean"]
    reconstruction = bernoulli_nll(logits.astype(_at_least_f32(logits)), images)
    kl = gaussian_kl(mean.astype(_at_least_f32(mean)), outputs["log_variance"])
    return reconstruction + kl, {"reconstruction": reconstruction, "kl": kl}


def apply_in_batches(
    fn: Callable, state, data: DeviceDataset, preprocess: Preprocess, batch_size: int = 1000
) -> np.ndarray:
    """`fn(variables, images)` over every example of `data` in order, as one host array."""
    compiled = jax.jit(lambda variables, batch: fn(variables, batch["image"]))
    variables = model_variables(state)
    chunks = [compiled(variables, b) for b in eval_batches(data, batch_size, preprocess)]
    return np.concatenate(jax.device_get(chunks))[: len(data)]


def per_image_error(apply_fn: Callable) -> Callable:
    """(variables, images f32[B, H, W, C]) -> mean squared reconstruction error f32[B]."""

    def error(variables, images):
        return mean_squared_error(apply_fn(variables, images), images)[0]

    return error


def pixels(dataset: ArrayDataset) -> np.ndarray:
    """f32[N, H·W·C] in [0, 1]: the flat images PCA and k-means read."""
    return dataset.images.reshape(len(dataset), -1).astype(np.float32) / 255.0


def pca_scores(train: np.ndarray, components: int, seed: int, *splits: np.ndarray):
    """PCA with `components` fitted on `train` f[N, D]; for each split f[M, D], its codes
    f[M, components] and per-example reconstruction errors f[M]."""
    from sklearn.decomposition import PCA

    pca = PCA(components, svd_solver="randomized", random_state=seed).fit(train)
    out = []
    for split in splits:
        codes = pca.transform(split)
        error = np.mean(np.square(pca.inverse_transform(codes) - split), axis=1)
        out.append((codes, error))
    return out


def whiten(points: np.ndarray) -> np.ndarray:
    """f[N, D] -> f64[N, D]: centred, rotated onto the principal axes and scaled to unit
    variance on each (scikit-learn's `PCA(whiten=True)`). An autoencoder's code is only
    defined up to an invertible linear map (the decoder's first linear layer can undo any),
    so k-means, which measures plain Euclidean distance, reads it whitened: its clusters are
    then the same whichever of those codes training happened to find."""
    from sklearn.decomposition import PCA

    return PCA(whiten=True, random_state=0).fit_transform(np.asarray(points, np.float64))


def kmeans_accuracy(points: np.ndarray, labels: np.ndarray, clusters: int, seed: int) -> float:
    """Clustering accuracy (`jaxdl.metrics.clustering_accuracy`) of k-means with `clusters`
    clusters and 10 starts on `points` f[N, D]."""
    from sklearn.cluster import KMeans

    assigned = KMeans(clusters, n_init=10, random_state=seed).fit_predict(points)
    return clustering_accuracy(labels, assigned)


@dataclasses.dataclass(frozen=True)
class Autoencoding(Classification):
    """The autoencoder's task (see the module docstring): `anomaly_digit` (None: none) is held
    out of the training and validation splits; `outlier_dataset`'s test images, grey and
    resized, are the out-of-distribution anomalies."""

    anomaly_digit: int | None = 9
    outlier_dataset: str = "cifar10"
    target = "image"
    objective = staticmethod(mean_squared_error)
    selection = Selection("val_loss", "min", fallback="train_loss")
    # no labels to smooth or classes to predict; no crops or mirror images to reconstruct
    unsupported = frozenset(
        {"label_smoothing", "flip_tta", "save_predictions", "crop_padding", "flip"}
    )

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def splits(self, config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        train, val, test = load_splits(config)
        digit = self.anomaly_digit
        if digit is None:
            return train, val, test
        if not 0 <= digit < train.num_classes:
            raise ConfigError(
                f"--anomaly_digit {digit} is not a class of {config.dataset} (0..."
                f"{train.num_classes - 1}); choose one of them, or -1 for none."
            )
        keep = lambda split: split.take(np.flatnonzero(split.labels != digit))  # noqa: E731
        return keep(train), keep(val), test

    def describe(self, config: TrainConfig, train, val, test) -> str:
        held_out = (
            f"; digit {self.anomaly_digit} held out of training and validation (the anomaly)"
            if self.anomaly_digit is not None
            else ""
        )
        return (
            f"{config.dataset}: {len(train):,} train / {len(val):,} validation / {len(test):,} "
            f"test images of {'x'.join(map(str, train.image_shape))}, pixels in [0, 1]{held_out}"
        )

    def normalization(self, train: ArrayDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
        channels = train.image_shape[-1]  # pixels in [0, 1]: what MSE and a likelihood read
        return (0.0,) * channels, (1.0,) * channels

    def num_outputs(self, train: ArrayDataset) -> int:
        return train.image_shape[-1]  # the channels the model reconstructs

    def augmentation(self, config: TrainConfig) -> Augmentation:
        return Augmentation()

    def evaluators(self, run: Run) -> list[Evaluator]:
        if run.val_data is None:
            return []

        def validation(state) -> dict[str, float]:
            metrics = evaluate(
                run.runner.evaluate, state, run.val_data, run.config.eval_batch_size, run.preprocess
            )
            return {f"val_{name}": value for name, value in metrics.items() if name != "count"}

        return [validation]

    def outliers(self, config: TrainConfig, image_shape: tuple[int, ...]) -> ArrayDataset:
        """`outlier_dataset`'s test images as `image_shape` images (grey, resized)."""
        other = data_lib.load(
            self.outlier_dataset, "test", config.data_dir, limit=config.test_limit
        )
        images = other.images
        if image_shape[-1] == 1 and images.shape[-1] == 3:
            images = grayscale(images)
        if images.shape[1:3] != image_shape[:2]:
            images = resize(images, image_shape[0])
        return ArrayDataset(images, other.labels, other.class_names)

    def scores(self, run: Run, state) -> dict[str, np.ndarray]:
        """What the figures and plots are computed from (single-device `state`): codes and
        reconstruction errors of the test and outlier images, by the model and by PCA."""
        config = run.config
        code = int(config.model_options.get("code", 32))
        encode = lambda variables, images: state.apply_fn(  # noqa: E731
            variables, images, method="encode"
        )
        test_data = data_lib.to_device(run.test)
        outliers = self.outliers(config, run.train.image_shape)
        error = per_image_error(state.apply_fn)
        (pca_test_codes, pca_test_error), (_, pca_outlier_error) = pca_scores(
            pixels(run.train), code, config.seed, pixels(run.test), pixels(outliers)
        )
        return {
            "codes": apply_in_batches(encode, state, test_data, run.preprocess),
            "error": apply_in_batches(error, state, test_data, run.preprocess),
            "outlier_error": apply_in_batches(
                error, state, data_lib.to_device(outliers), run.preprocess
            ),
            "pca_codes": pca_test_codes,
            "pca_error": pca_test_error,
            "pca_outlier_error": pca_outlier_error,
        }

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        config, code = run.config, int(run.config.model_options.get("code", 32))
        metrics = evaluate(
            run.runner.evaluate, state, test_data, config.eval_batch_size, run.preprocess
        )
        scores = self.scores(run, run.runner.local_state(state))
        labels, clusters = run.test.labels, run.test.num_classes
        results = {
            "test_mse": metrics["loss"],
            "pca_test_mse": float(np.mean(scores["pca_error"])),
            "clustering_accuracy_codes": kmeans_accuracy(
                whiten(scores["codes"]), labels, clusters, config.seed
            ),
            "clustering_accuracy_raw_codes": kmeans_accuracy(
                scores["codes"], labels, clusters, config.seed
            ),
            "clustering_accuracy_pixels": kmeans_accuracy(
                pixels(run.test), labels, clusters, config.seed
            ),
            "clustering_accuracy_pca": kmeans_accuracy(
                scores["pca_codes"], labels, clusters, config.seed
            ),
            "clustering_accuracy_whitened_pca": kmeans_accuracy(
                whiten(scores["pca_codes"]), labels, clusters, config.seed
            ),
            "auroc_outliers": auroc(scores["error"], scores["outlier_error"]),
            "pca_auroc_outliers": auroc(scores["pca_error"], scores["pca_outlier_error"]),
            "pca_components": code,
            "test_count": metrics["count"],
        }
        if self.anomaly_digit is not None:
            held_out = labels == self.anomaly_digit
            for prefix, error in (("", scores["error"]), ("pca_", scores["pca_error"])):
                results[f"{prefix}auroc_held_out_digit"] = auroc(error[~held_out], error[held_out])
        return results

    def report(self, results: dict[str, Any]) -> None:
        code = f"PCA-{results['pca_components']}"
        log(
            f"clustering accuracy, k-means on the codes: "
            f"{100 * results['clustering_accuracy_codes']:.2f} % (whitened; as they are: "
            f"{100 * results['clustering_accuracy_raw_codes']:.2f} %)"
        )
        log(
            f"clustering accuracy, k-means on raw pixels: "
            f"{100 * results['clustering_accuracy_pixels']:.2f} %"
        )
        log(
            f"clustering accuracy, k-means on {code} codes: "
            f"{100 * results['clustering_accuracy_pca']:.2f} % (whitened: "
            f"{100 * results['clustering_accuracy_whitened_pca']:.2f} %)"
        )
        if "auroc_held_out_digit" in results:
            log(
                f"AUROC digit {self.anomaly_digit} vs other digits: "
                f"{results['auroc_held_out_digit']:.3f} ({code}: "
                f"{results['pca_auroc_held_out_digit']:.3f})"
            )
        other = {"cifar10": "grey CIFAR-10"}.get(self.outlier_dataset, self.outlier_dataset)
        log(
            f"AUROC MNIST vs {other}: {results['auroc_outliers']:.3f} "
            f"({code}: {results['pca_auroc_outliers']:.3f})"
        )
        log(f"PCA test reconstruction MSE: {results['pca_test_mse']:.5f}")
        log(f"test reconstruction MSE: {results['test_mse']:.5f}")

    def outputs(self, run: Run, state, test_data: DeviceDataset, history) -> None:
        if not run.config.plots:
            return
        from sklearn.manifold import TSNE

        out = run.rundir.plots
        if history:
            plot_curves({"run": history}, f"{out}/curves.png")
        images = np.asarray(run.test.images[:16], np.float32) / 255.0
        reconstructions = apply_in_batches(
            state.apply_fn, state, data_lib.to_device(run.test.take(np.arange(16))), run.preprocess
        )
        plot_reconstructions(images, reconstructions, f"{out}/reconstructions.png")
        scores = self.scores(run, state)
        shown = np.arange(min(2000, len(run.test)))
        points = TSNE(2, random_state=run.config.seed, init="pca").fit_transform(
            scores["codes"][shown]
        )
        plot_codes_2d(
            points,
            run.test.labels[shown],
            run.test.class_names,
            f"{out}/codes_tsne.png",
            f"t-SNE of {len(shown):,} test images' codes",
        )
        other = {"cifar10": "grey CIFAR-10"}.get(self.outlier_dataset, self.outlier_dataset)
        panels = {
            f"MNIST test vs {other}": {
                "MNIST": scores["error"],
                other: scores["outlier_error"],
            }
        }
        if self.anomaly_digit is not None:
            held_out = run.test.labels == self.anomaly_digit
            panels[f"digit {self.anomaly_digit} (held out) vs the others"] = {
                "other digits": scores["error"][~held_out],
                f"digit {self.anomaly_digit}": scores["error"][held_out],
            }
        plot_score_histograms(panels, f"{out}/anomaly_scores.png")


def importance_weighted_bounds(
    apply_fn: Callable, variables: dict, images: jax.Array, key: jax.Array, samples: int
) -> dict[str, jax.Array]:
    """Per image f32[B] of binary images f32[B, H, W, C]: the negative ELBO with its
    reconstruction (averaged over `samples` latents) and analytic KL terms, and the
    importance-weighted estimate of log p(x) from the same `samples` latents, log (1/k) Σ
    p(x, z_k) / q(z_k | x), a lower bound tighter than the ELBO (Burda et al. 2016)."""
    mean, log_variance = apply_fn(variables, images, method="encode")
    std = jnp.exp(0.5 * log_variance)
    noise = jax.random.normal(key, (samples, *mean.shape))
    latents = mean + std * noise  # [k, B, L]
    logits = apply_fn(variables, latents.reshape(-1, mean.shape[-1]), method="decode")
    logits = logits.reshape(samples, *images.shape)
    log_likelihood = -bernoulli_nll(logits, images[None])  # [k, B]
    normal_log_density = lambda z: -0.5 * (jnp.square(z) + jnp.log(2 * jnp.pi))  # noqa: E731
    log_prior = jnp.sum(normal_log_density(latents), -1)
    log_posterior = jnp.sum(normal_log_density(noise) - jnp.log(std), -1)
    log_weights = log_likelihood + log_prior - log_posterior
    reconstruction = -jnp.mean(log_likelihood, 0)
    kl = gaussian_kl(mean, log_variance)
    return {
        "negative_elbo": reconstruction + kl,
        "reconstruction": reconstruction,
        "kl": kl,
        "log_likelihood": jax.nn.logsumexp(log_weights, 0) - math.log(samples),
    }


@dataclasses.dataclass(frozen=True)
class VariationalAutoencoding(Autoencoding):
    """The VAE's task (see the module docstring); the test log-likelihood is estimated with
    `importance_samples` latents per image."""

    anomaly_digit: int | None = None
    importance_samples: int = 100
    objective = staticmethod(negative_elbo)

    def splits(self, config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        train, val, test = load_splits(config)
        fixed = lambda split, offset: ArrayDataset(  # noqa: E731
            binarize_once(split.images, config.seed + offset), split.labels, split.class_names
        )
        return train, fixed(val, 1), fixed(test, 2)

    def describe(self, config: TrainConfig, train, val, test) -> str:
        return (
            f"{config.dataset}, binarised: {len(train):,} train (a fresh draw each epoch) / "
            f"{len(val):,} validation / {len(test):,} test images (drawn once) of "
            f"{'x'.join(map(str, train.image_shape))}"
        )

    def augmentation(self, config: TrainConfig) -> Augmentation:
        return Augmentation(binarize=True)

    def bounds(self, run: Run, state, batch_size: int = 100) -> dict[str, float]:
        """The test split's mean negative ELBO (and its terms) and importance-weighted
        log-likelihood, in nats (single-device `state`)."""
        key = jax.random.PRNGKey(run.config.seed)
        samples = self.importance_samples
        bound = jax.jit(
            functools.partial(importance_weighted_bounds, state.apply_fn, samples=samples)
        )
        variables, totals, count = model_variables(state), {}, 0
        test_data = data_lib.to_device(run.test)
        for index, batch in enumerate(eval_batches(test_data, batch_size, run.preprocess)):
            figures = bound(variables, batch["image"], jax.random.fold_in(key, index))
            mask = np.asarray(batch["mask"])
            for name, values in jax.device_get(figures).items():
                totals[name] = totals.get(name, 0.0) + float(np.sum(values * mask))
            count += int(mask.sum())
        return {name: total / count for name, total in totals.items()}

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        bounds = self.bounds(run, run.runner.local_state(state))
        return {
            "test_negative_elbo": bounds["negative_elbo"],
            "test_reconstruction": bounds["reconstruction"],
            "test_kl": bounds["kl"],
            "test_log_likelihood_iw": bounds["log_likelihood"],
            "importance_samples": self.importance_samples,
            "test_count": len(run.test),
        }

    def report(self, results: dict[str, Any]) -> None:
        log(
            f"test log-likelihood, importance-weighted (k = {results['importance_samples']}): "
            f"{results['test_log_likelihood_iw']:.2f} nats"
        )
        log(f"test reconstruction term: {results['test_reconstruction']:.2f} nats")
        log(f"test KL term: {results['test_kl']:.2f} nats")
        log(f"test negative ELBO: {results['test_negative_elbo']:.2f} nats")

    def outputs(self, run: Run, state, test_data: DeviceDataset, history) -> None:
        if not run.config.plots:
            return
        out = run.rundir.plots
        if history:
            plot_curves({"run": history}, f"{out}/curves.png")
        variables = model_variables(state)
        latent = int(run.config.model_options.get("latent", 32))
        decode = jax.jit(lambda z: jax.nn.sigmoid(state.apply_fn(variables, z, method="decode")))
        noise = jax.random.normal(jax.random.PRNGKey(run.config.seed), (64, latent))
        plot_image_grid(
            np.asarray(decode(noise)), f"{out}/samples.png", 8, "samples: decoder means"
        )
        images = jnp.asarray(run.test.images[:16], jnp.float32) / 255.0
        means, _ = state.apply_fn(variables, images, method="encode")
        weights = jnp.linspace(0.0, 1.0, 10)[None, :, None]
        path = (1 - weights) * means[:8, None] + weights * means[8:16, None]  # [8, 10, L]
        grid = decode(path.reshape(-1, latent))
        plot_image_grid(
            np.asarray(grid),
            f"{out}/interpolation.png",
            10,
            "latent interpolation between test images (rows)",
        )
        probabilities = np.asarray(jax.nn.sigmoid(state.apply_fn(variables, images)["logits"]))
        plot_reconstructions(np.asarray(images), probabilities, f"{out}/reconstructions.png")

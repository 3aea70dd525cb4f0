"""Metrics: confusion matrix, intersection-over-union, and per-batch results turned into epoch
means."""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """i64[K, K]: entry [t, p] counts examples of true class t predicted as p."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def intersection_over_union(matrix: np.ndarray) -> np.ndarray:
    """f64[K] from a confusion matrix i64[K, K]: per class, true positives / (true + predicted
    - true positives); NaN for a class that is neither present nor predicted."""
    hits = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, hits / union, np.nan)


def mean_of_batches(batch_metrics: Iterable[dict[str, jax.Array]]) -> dict[str, float]:
    """Mean of each metric over equally sized batches (training batches all are). One host
    transfer at the end, so the device is never stalled mid-epoch."""
    batch_metrics = list(batch_metrics)
    if not batch_metrics:
        return {}
    stacked = jax.device_get(jax.tree.map(lambda *xs: jnp.stack(xs), *batch_metrics))
    return {name: float(np.mean(values)) for name, values in stacked.items()}


def totals_to_means(batch_sums: Iterable[dict[str, jax.Array]]) -> dict[str, float]:
    """Adds `eval_step` sums over all batches and returns `{"loss", "accuracy", "count"}`
    (for an objective with named figures, each `"<name>_sum"` as the mean `"<name>"` instead
    of "accuracy")."""
    totals = jax.device_get(jax.tree.map(lambda *xs: sum(xs), *list(batch_sums)))
    count = float(totals["count"])
    means = {"loss": float(totals["loss_sum"]) / count}
    if "correct" in totals:
        means["accuracy"] = float(totals["correct"]) / count
    for name, total in totals.items():
        if name.endswith("_sum") and name != "loss_sum":
            means[name.removesuffix("_sum")] = float(total) / count
    return means | {"count": int(count)}


def clustering_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """The fraction of examples whose cluster maps to their label under the best one-to-one
    matching of clusters to labels (Hungarian algorithm,
    `scipy.optimize.linear_sum_assignment`), from labels i[N] and cluster ids i[N]."""
    from scipy.optimize import linear_sum_assignment

    labels, clusters = np.asarray(labels), np.asarray(clusters)
    if labels.shape != clusters.shape:
        raise ValueError(f"labels {labels.shape} and clusters {clusters.shape} differ in shape")
    _, label_ids = np.unique(labels, return_inverse=True)
    _, cluster_ids = np.unique(clusters, return_inverse=True)
    counts = np.zeros((cluster_ids.max() + 1, label_ids.max() + 1), np.int64)
    np.add.at(counts, (cluster_ids, label_ids), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def auroc(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    """The area under the ROC curve of telling anomalies from normal examples by a score
    (higher: more anomalous): the probability that a random anomaly scores above a random
    normal example, ties counting one half (the Mann-Whitney U statistic)."""
    from scipy.stats import rankdata

    normal, anomalous = np.ravel(normal_scores), np.ravel(anomaly_scores)
    if not len(normal) or not len(anomalous):
        raise ValueError("AUROC needs at least one normal and one anomalous score")
    ranks = rankdata(np.concatenate([normal, anomalous]))
    anomaly_rank_sum = ranks[len(normal) :].sum()
    u = anomaly_rank_sum - len(anomalous) * (len(anomalous) + 1) / 2
    return float(u / (len(normal) * len(anomalous)))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features f[N, D] (Heusel
    et al. 2017's FID when the features are Inception's): |mu_a - mu_b|^2 + tr(S_a + S_b -
    2 (S_a S_b)^(1/2))."""
    from scipy import linalg

    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root = np.real(linalg.sqrtm(cov_a @ cov_b))  # rounding leaves a negligible imaginary part
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def inception_score(probabilities: np.ndarray) -> float:
    """exp(E_x KL(p(y | x) || p(y))) of a classifier's class probabilities f[N, K] on
    generated examples (Salimans et al. 2016): K for confident predictions spread evenly over
    the K classes, 1 for identical ones."""
    p = np.asarray(probabilities, np.float64)
    marginal = p.mean(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0)
    return float(np.exp(terms.sum(1).mean()))

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
    """Adds `eval_step` sums over all batches and returns `{"loss", "accuracy", "count"}`."""
    totals = jax.device_get(jax.tree.map(lambda *xs: sum(xs), *list(batch_sums)))
    count = float(totals["count"])
    return {
        "loss": float(totals["loss_sum"]) / count,
        "accuracy": float(totals["correct"]) / count,
        "count": int(count),
    }

"""Seeded, stable train / validation splits carved from a training split."""

from __future__ import annotations

import numpy as np

from jaxdl.data.sources import ArrayDataset
from jaxdl.errors import ConfigError


def train_val_split(
    dataset: ArrayDataset, val_size: int, seed: int = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Splits off `val_size` examples for validation, chosen by a permutation seeded with `seed`.

    The same dataset and seed always give the same split (NumPy's PCG64 permutation is
    stable across versions), independent of the training seed's other uses. Each part keeps
    the original example order.
    """
    n = len(dataset)
    if not 0 <= val_size < n:
        raise ConfigError(
            f"validation size {val_size} must be at least 0 and below the {n} training examples."
        )
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    return dataset.take(train_idx), dataset.take(val_idx)

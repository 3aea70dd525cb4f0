"""Small real tabular datasets that ship inside scikit-learn (no download), and the usual
preparation: a seeded train / test split and feature standardisation.

    diabetes       442 x 10 features, a disease-progression score (regression)
    breast_cancer  569 x 30 features, malignant (0) / benign (1) (binary classification)
    iris           150 x 4 features, 3 species (multi-class)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxdl.errors import ConfigError

TABULAR = ("diabetes", "breast_cancer", "iris")


@dataclasses.dataclass(frozen=True)
class Table:
    """features f32[N, D], targets f32[N] (regression) or i32[N] (classes), column names."""

    features: np.ndarray
    targets: np.ndarray
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, rows: np.ndarray) -> Table:
        return Table(self.features[rows], self.targets[rows], self.feature_names)


def load_table(name: str) -> Table:
    """One of `TABULAR`, as float32 features in their natural units (age in years, blood
    pressure in mm Hg, ...: diabetes unscaled), so feature normalisation is the user's step."""
    if name not in TABULAR:
        raise ConfigError(f"unknown tabular dataset {name!r}; choose one of {', '.join(TABULAR)}.")
    try:
        from sklearn import datasets
    except ImportError:
        raise ConfigError(
            f"the {name} dataset ships with scikit-learn, which is not installed; "
            f"pip install scikit-learn."
        ) from None
    options = {"scaled": False} if name == "diabetes" else {}
    bunch = getattr(datasets, f"load_{name}")(**options)
    targets = bunch.target.astype(np.float32 if name == "diabetes" else np.int32)
    return Table(bunch.data.astype(np.float32), targets, tuple(bunch.feature_names))


def train_test_split(
    table: Table, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Table, Table]:
    """A seeded random split; each part keeps the original row order."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test fraction must be in (0, 1), got {test_fraction}.")
    order = np.random.default_rng(seed).permutation(len(table))
    test_size = max(1, round(test_fraction * len(table)))
    return table.take(np.sort(order[test_size:])), table.take(np.sort(order[:test_size]))


def standardize(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each column to zero mean and unit variance using the training rows' statistics only (so
    nothing about the test rows leaks into training); constant columns are left unscaled."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return tuple((x - mean) / std for x in (train, *others))

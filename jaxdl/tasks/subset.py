"""Classification on some of a dataset's classes: CIFAR-10's cats and dogs as a two-class
task, or the other eight to pre-train on. The chosen classes are relabelled 0..k-1 in the
order given; every split keeps only their images (the validation split is carved from the
whole training split first, as for every classification run, so the subsets of one seed never
share an image); `train_images` keeps the first N training images of the subset (a small-data
regime)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxdl.config import TrainConfig
from jaxdl.data.sources import ArrayDataset
from jaxdl.errors import ConfigError
from jaxdl.tasks.classification import Classification, load_splits


def keep_classes(split: ArrayDataset, classes: tuple[int, ...], limit: int | None = None):
    """The examples of `split` whose label is in `classes`, relabelled by position there, at
    most `limit` of them (the first ones)."""
    mapping = np.full(max(split.num_classes, max(classes) + 1), -1, np.int32)
    mapping[list(classes)] = np.arange(len(classes))
    rows = np.flatnonzero(mapping[split.labels] >= 0)[:limit]
    names = tuple(split.class_names[c] for c in classes)
    return ArrayDataset(split.images[rows], mapping[split.labels[rows]], names)


@dataclasses.dataclass(frozen=True)
class ClassSubset(Classification):
    """See the module docstring."""

    classes: tuple[int, ...] = (3, 5)  # CIFAR-10's cat and dog
    train_images: int | None = None

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def splits(self, config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        train, val, test = load_splits(config)
        if len(set(self.classes)) != len(self.classes) or not all(
            0 <= c < train.num_classes for c in self.classes
        ):
            raise ConfigError(
                f"classes {self.classes} must be distinct ids in [0, {train.num_classes}) of "
                f"{config.dataset} ({', '.join(train.class_names)})."
            )
        return (
            keep_classes(train, self.classes, self.train_images),
            keep_classes(val, self.classes),
            keep_classes(test, self.classes),
        )

    def describe(self, config: TrainConfig, train, val, test) -> str:
        return (
            f"{config.dataset}, classes {', '.join(train.class_names)}: {len(train):,} train / "
            f"{len(val):,} validation / {len(test):,} test images"
        )

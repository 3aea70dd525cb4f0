"""Datasets by TFDS name, read through `tfds` random-access data sources (no TensorFlow needed)
and decoded once into in-memory uint8 arrays.

Where the prepared data lives: `data_dir`, else `$TFDS_DATA_DIR`, else TFDS's default
(~/tensorflow_datasets). On these machines it is `../shared/tfds`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os

import numpy as np

from jaxdl.errors import ConfigError

# TFDS logs a warning per process that OpenCV is missing and PIL decodes instead; that is fine.
logging.getLogger("absl").setLevel(logging.ERROR)

_DECODE_CHUNK = 5000


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A split held in host memory: images uint8[N, H, W, C], labels int32[N]."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def take(self, indices: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.images[indices], self.labels[indices], self.class_names)


def resolve_data_dir(data_dir: str | None) -> str:
    """`data_dir`, else $TFDS_DATA_DIR, else TFDS's default folder."""
    if data_dir:
        return os.path.expanduser(data_dir)
    if os.environ.get("TFDS_DATA_DIR"):
        return os.path.expanduser(os.environ["TFDS_DATA_DIR"])
    return os.path.expanduser("~/tensorflow_datasets")


def _builder(name: str, data_dir: str):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        prepared = (
            sorted(d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d)))
            if os.path.isdir(data_dir)
            else []
        )
        hint = f" (prepared under {data_dir}: {', '.join(prepared)})" if prepared else ""
        raise ConfigError(
            f"unknown dataset {name!r}: TFDS has no dataset of that name; "
            f"use a TFDS name such as mnist or cifar10{hint}."
        ) from None


def _ensure_prepared(builder, name: str, data_dir: str, download: bool) -> None:
    if builder.is_prepared():
        return
    can_download = download and importlib.util.find_spec("tensorflow") is not None
    if not can_download:
        raise ConfigError(
            f"no prepared {name!r} data under {data_dir}; point --data_dir or TFDS_DATA_DIR at "
            f"a folder holding TFDS's prepared {name} (here: ../shared/tfds), or install "
            f"tensorflow on a machine with internet so TFDS can download and prepare it."
        )
    builder.download_and_prepare(file_format="array_record")


def load(
    name: str,
    split: str,
    data_dir: str | None = None,
    limit: int | None = None,
    download: bool = True,
) -> ArrayDataset:
    """Decodes split `split` of TFDS dataset `name` into memory.

    `limit` keeps the first `limit` examples (for quick tests). Raises `ConfigError` for an
    unknown name, for data that is not prepared (downloading it if `download` and TensorFlow is
    installed), and for a split the dataset does not have.
    """
    data_dir = resolve_data_dir(data_dir)
    builder = _builder(name, data_dir)
    _ensure_prepared(builder, name, data_dir, download)
    if split not in builder.info.splits:
        raise ConfigError(
            f"dataset {name!r} has no split {split!r}; it has {', '.join(builder.info.splits)}."
        )
    source = builder.as_data_source(split=split)
    count = len(source) if limit is None else min(limit, len(source))
    images, labels = [], []
    for start in range(0, count, _DECODE_CHUNK):
        for example in source.__getitems__(list(range(start, min(count, start + _DECODE_CHUNK)))):
            images.append(example["image"])
            labels.append(example["label"])
    label_feature = builder.info.features["label"]
    class_names = tuple(getattr(label_feature, "names", None) or map(str, range(max(labels) + 1)))
    return ArrayDataset(np.stack(images), np.asarray(labels, np.int32), class_names)

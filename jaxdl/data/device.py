"""Datasets resident on the device, and batches cut from them by jitted gathers.

A split is put on the device once as uint8 (CIFAR-10's 50,000 training images are 150 MB).
Each epoch draws one permutation on the device; each step gathers its batch, normalises and
augments it in one jitted call, so the host only dispatches.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.augment import Augmentation, augment, normalize
from jaxdl.data.boxes import random_zoom_shift
from jaxdl.data.sources import ArrayDataset
from jaxdl.errors import ConfigError


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DeviceDataset:
    """images uint8[N, H, W, C] and labels i32[N], as device arrays."""

    images: jax.Array
    labels: jax.Array

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def to_device(dataset: ArrayDataset, device=None) -> DeviceDataset:
    """Copies a host dataset to `device` (default: the first device), once."""
    return DeviceDataset(
        jax.device_put(dataset.images, device), jax.device_put(dataset.labels, device)
    )


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How raw uint8 images become model input: per-channel `mean`/`std` (in [0, 1] units) and
    the training `augmentation`; with `tokens`, the stored uint8 values are token ids and
    become i32 as they are (no normalisation, no augmentation). Hashable, so jitted functions
    take it as a static argument."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: Augmentation = Augmentation()
    tokens: bool = False

    def inputs(self, stored: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Model input from stored rows: normalised (and, given a `key`, augmented) images
        f32[B, H, W, C], or token ids i32[B, T]."""
        if self.tokens:
            return stored.astype(jnp.int32)
        images = normalize(stored, self.mean, self.std)
        return images if key is None else augment(key, images, self.augmentation)

    def examples(
        self, stored: jax.Array, labels: jax.Array, key: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """(model input, labels) of stored rows and their labels: `inputs`, and, given a `key`
        and an augmentation with `shift_zoom`, the geometry moved first, box labels with it
        (on the raw pixels, so what moves in from outside is a black background)."""
        shift_zoom = self.augmentation.shift_zoom
        if key is None or shift_zoom is None:
            return self.inputs(stored, key), labels
        pixels, labels = random_zoom_shift(
            jax.random.fold_in(key, 3), stored.astype(jnp.float32), labels, shift_zoom
        )
        images = normalize(pixels, self.mean, self.std)
        return augment(key, images, self.augmentation), labels


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full training batches per epoch (the remainder is dropped; the next epoch's shuffle
    gives every example its turn)."""
    if batch_size > num_examples:
        raise ConfigError(
            f"batch size {batch_size} is larger than the {num_examples} training examples; "
            f"use --batch_size {num_examples} or less."
        )
    return num_examples // batch_size


@functools.partial(jax.jit, static_argnames=("num_examples", "batch_size"))
def epoch_order(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """i32[steps, batch_size]: a fresh permutation of the examples cut into training batches."""
    steps = num_examples // batch_size
    return jax.random.permutation(key, num_examples)[: steps * batch_size].reshape(
        steps, batch_size
    )


@functools.partial(jax.jit, static_argnames=("preprocess",))
def train_batch(
    data: DeviceDataset, order: jax.Array, index: jax.Array, key: jax.Array, preprocess: Preprocess
) -> dict[str, jax.Array]:
    """Batch number `index` of an epoch: gather rows `order[index]`, normalise, augment.
    Returns `{"image": f32[B, H, W, C], "label": i32[B]}`."""
    rows = order[index]
    images, labels = preprocess.examples(data.images[rows], data.labels[rows], key)
    return {"image": images, "label": labels}


def train_batches(
    data: DeviceDataset, key: jax.Array, batch_size: int, preprocess: Preprocess, start: int = 0
) -> Iterator[dict[str, jax.Array]]:
    """One epoch of shuffled, augmented training batches, from batch `start` on. `key` decides
    the order and the augmentation, so the same key gives the same epoch."""
    order_key, augment_key = jax.random.split(key)
    order = epoch_order(order_key, len(data), batch_size)
    for index in range(start, order.shape[0]):
        yield train_batch(data, order, index, jax.random.fold_in(augment_key, index), preprocess)


@functools.partial(jax.jit, static_argnames=("preprocess",))
def _eval_batch(data: DeviceDataset, rows: jax.Array, mask: jax.Array, preprocess: Preprocess):
    return {"image": preprocess.inputs(data.images[rows]), "label": data.labels[rows], "mask": mask}


def eval_batches(
    data: DeviceDataset, batch_size: int, preprocess: Preprocess
) -> Iterator[dict[str, jax.Array]]:
    """Every example exactly once, in order, in batches of `batch_size`. The last batch is
    padded with repeats of the final example and a `mask` f32[B] of 0 marks the padding, so
    every batch has one shape (one compile) and masked sums count each example once."""
    n = len(data)
    steps = -(-n // batch_size)
    positions = np.arange(steps * batch_size).reshape(steps, batch_size)
    rows = np.minimum(positions, n - 1).astype(np.int32)
    masks = (positions < n).astype(np.float32)
    for index in range(steps):
        yield _eval_batch(data, rows[index], masks[index], preprocess)

"""On-device normalisation and augmentation, batched and jittable.

Images arrive as uint8[B, H, W, C]; everything here runs inside `jax.jit` on the device, with
randomness from an explicit key, so no per-example Python runs during training.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Which augmentations a training batch gets (hashable: it is a static jit argument).

    `crop_padding` p > 0: pad each side by p pixels of the mean colour and crop back to H x W at
    a random offset. `flip`: mirror left-right with probability 1/2. `binarize`: each pixel
    (intensities in [0, 1], not standardised) becomes 1 with probability its intensity, else
    0 — the dynamically binarised MNIST of the VAE literature, a fresh draw every epoch.
    `shift_zoom` z (labels that are boxes only, `jaxdl.data.boxes`): shift each image to a
    random place that keeps its boxes whole and, for z > 0, scale it by a factor in
    [1 - z, 1 + z], the boxes moving with the pixels; None leaves the geometry alone.
    """

    crop_padding: int = 0
    flip: bool = False
    binarize: bool = False
    shift_zoom: float | None = None


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8[N, H, W, C] images, in [0, 1] units."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return tuple(pixels.mean(0).tolist()), tuple(pixels.std(0).tolist())


def normalize(images: jax.Array, mean, std) -> jax.Array:
    """uint8[B, H, W, C] -> f32[B, H, W, C]: (x / 255 - mean) / std per channel."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (images.astype(jnp.float32) / 255.0 - mean) / std


def random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    """f32[B, H, W, C] -> f32[B, H, W, C]: zero-pad by `padding` and crop at a random offset per
    image (Krizhevsky et al. 2012; He et al. 2016 use padding 4 on CIFAR). Apply after
    `normalize`, so the padding is the mean colour."""
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """f32[B, H, W, C]: each image mirrored left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def random_binarize(key: jax.Array, images: jax.Array) -> jax.Array:
    """f32[B, H, W, C] of intensities in [0, 1] -> f32 of 0 and 1, each pixel 1 with
    probability its intensity."""
    return jax.random.bernoulli(key, jnp.clip(images, 0.0, 1.0)).astype(images.dtype)


def binarize_once(images: np.ndarray, seed: int) -> np.ndarray:
    """uint8[N, H, W, C] -> uint8 of 0 and 255, each pixel 255 with probability its intensity,
    drawn once with `seed`: fixed binary validation and test images."""
    draws = np.random.default_rng(seed).random(images.shape)
    return np.where(draws < images / 255.0, 255, 0).astype(np.uint8)


def grayscale(images: np.ndarray) -> np.ndarray:
    """uint8[N, H, W, 3] -> uint8[N, H, W, 1]: luma (ITU-R BT.601 weights)."""
    luma = np.asarray(images, np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8[N, H, W, C] -> uint8[N, size, size, C], antialiased bilinear
    (`jax.image.resize`)."""
    shape = (images.shape[0], size, size, images.shape[-1])
    out = jax.image.resize(jnp.asarray(images, jnp.float32), shape, "linear", antialias=True)
    return np.clip(np.rint(np.asarray(out)), 0, 255).astype(np.uint8)


def augment(key: jax.Array, images: jax.Array, augmentation: Augmentation) -> jax.Array:
    """Applies `augmentation` to normalised images f32[B, H, W, C]."""
    crop_key, flip_key = jax.random.split(key)
    if augmentation.binarize:
        images = random_binarize(jax.random.fold_in(key, 2), images)
    if augmentation.crop_padding:
        images = random_crop(crop_key, images, augmentation.crop_padding)
    if augmentation.flip:
        images = random_flip(flip_key, images)
    return images

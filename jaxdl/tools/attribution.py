"""Which input pixels a trained network's decision rests on: the raw gradient saliency
(Simonyan et al. 2014), SmoothGrad (Smilkov et al. 2017), Grad-CAM (Selvaraju et al. 2017)
and occlusion sensitivity (Zeiler & Fergus 2014), and the deletion test that checks a map
against random pixels. Computations only; `jaxdl.plots.inside` draws them.

Inputs are model inputs (normalised images f32[B, H, W, C]) and their labels i32[B]; every map
is f32[B, H, W], one value per pixel. "Deleting" a pixel sets it to 0 in the normalised
space: the training data's mean colour.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.state import TrainState
from jaxdl.step import predict
from jaxdl.tools.features import probed_apply


def _true_class_score(state: TrainState, labels: jax.Array):
    def score(images):
        logits = predict(state, images)
        return jnp.take_along_axis(logits, labels[:, None], axis=1).sum()

    return score


@jax.jit
def gradient_saliency(state: TrainState, images: jax.Array, labels: jax.Array) -> jax.Array:
    """|d logit(true class) / d input|, max over channels: f32[B, H, W]."""
    grads = jax.grad(_true_class_score(state, labels))(images)
    return jnp.max(jnp.abs(grads), axis=-1)


@functools.partial(jax.jit, static_argnames=("samples",))
def smoothgrad(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    samples: int = 50,
    noise: float = 0.15,
) -> jax.Array:
    """The gradient saliency averaged over `samples` noisy copies of each image, the noise
    Gaussian with a standard deviation of `noise` times the image's value range: f32[B, H, W].
    The raw gradient of a ReLU network jumps from pixel to pixel; averaging over a
    neighbourhood of the input keeps what is consistent."""
    spread = noise * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))
    score = _true_class_score(state, labels)

    def add(index, total):
        eps = jax.random.normal(jax.random.fold_in(key, index), images.shape)
        noisy = images + spread[:, None, None, None] * eps
        return total + jnp.max(jnp.abs(jax.grad(score)(noisy)), axis=-1)

    total = jax.lax.fori_loop(0, samples, add, jnp.zeros(images.shape[:3], jnp.float32))
    return total / samples


@functools.partial(jax.jit, static_argnames=("layer",))
def grad_cam(state: TrainState, images: jax.Array, labels: jax.Array, layer: str) -> jax.Array:
    """Grad-CAM at top-level layer `layer`: its channels weighted by the spatial mean of the
    true class logit's gradient with respect to them, summed, ReLU, resized bilinearly to the
    image and scaled to [0, 1] per image: f32[B, H, W]."""
    _, unchanged = probed_apply(state, images, layer)  # for its shape; XLA drops the rest

    def score(delta):
        logits, activation = probed_apply(state, images, layer, delta)
        return jnp.take_along_axis(logits, labels[:, None], axis=1).sum(), activation

    grads, activation = jax.grad(score, has_aux=True)(jnp.zeros_like(unchanged))
    weights = grads.mean(axis=(1, 2), keepdims=True)
    cam = jax.nn.relu((weights * activation).sum(-1))
    cam = jax.image.resize(cam, images.shape[:3], "bilinear")
    return cam / (cam.max(axis=(1, 2), keepdims=True) + 1e-12)


def true_class_probability(
    state: TrainState, images: jax.Array, labels: jax.Array, batch_size: int = 500
) -> np.ndarray:
    """The network's probability of the true class f32[B], in batches of `batch_size`."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        out.append(np.asarray(_probability(state, images[chunk], labels[chunk])))
    return np.concatenate(out)


@jax.jit
def _probability(state, images, labels):
    probabilities = jax.nn.softmax(predict(state, images))
    return jnp.take_along_axis(probabilities, labels[:, None], axis=1)[:, 0]


def occlusion(
    state: TrainState, images: jax.Array, labels: jax.Array, patch: int = 8, stride: int = 2
) -> np.ndarray:
    """Occlusion sensitivity: each `patch` x `patch` square (every `stride` pixels) set to the
    mean colour in turn; a pixel's value is the true class probability lost, averaged over the
    squares that cover it: f32[B, H, W] (positive where hiding the pixel hurts)."""
    height, width = images.shape[1], images.shape[2]
    if patch > min(height, width):
        raise ValueError(f"occlusion patch {patch} is larger than the {height}x{width} images.")
    tops = range(0, height - patch + 1, stride)
    lefts = range(0, width - patch + 1, stride)
    masks = np.zeros((len(tops) * len(lefts), height, width), np.float32)
    for index, (top, left) in enumerate(itertools.product(tops, lefts)):
        masks[index, top : top + patch, left : left + patch] = 1
    coverage = np.maximum(masks.sum(0), 1)
    maps = []
    for image, label in zip(images, labels, strict=True):
        hidden = image[None] * (1 - masks[..., None])
        base = true_class_probability(state, image[None], label[None])[0]
        lost = base - true_class_probability(state, hidden, jnp.full(len(masks), label))
        maps.append(np.tensordot(lost, masks, axes=1) / coverage)
    return np.stack(maps)


def deletion_test(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    maps: np.ndarray,
    fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, float]:
    """Does a map point at what the decision rests on? The mean true class probability of
    `images` as they are (`original`), with the `fraction` of pixels that `maps` f32[B, H, W]
    rank highest set to the mean colour (`top_deleted`), and with as many pixels chosen at
    random deleted (`random_deleted`); a useful map loses more than random."""
    count, height, width = maps.shape
    deleted = int(round(fraction * height * width))
    rank = np.argsort(-maps.reshape(count, -1), axis=1, kind="stable")[:, :deleted]
    rng = np.random.default_rng(seed)
    chance = np.stack([rng.permutation(height * width)[:deleted] for _ in range(count)])

    def without(chosen):
        keep = np.ones((count, height * width), np.float32)
        np.put_along_axis(keep, chosen, 0.0, axis=1)
        return images * keep.reshape(count, height, width, 1)

    probability = lambda x: float(true_class_probability(state, x, labels).mean())
    return {
        "original": probability(images),
        "top_deleted": probability(without(rank)),
        "random_deleted": probability(without(chance)),
    }

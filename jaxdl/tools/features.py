"""What a trained network's units respond to: the feature maps of its top-level layers, the
input patch each unit sees, the test patches that excite a channel most, and images made to
excite a class (activation maximisation). Computations only; `jaxdl.plots.inside` draws them.

Every function reads a layer by the name of a top-level submodule of the model (for
ResNet-20: "ConvBN_0", "BasicBlock_0" ... "BasicBlock_8"); `feature_layers` lists them. Inputs
are model inputs (normalised images f32[B, H, W, C]), in inference mode (running BatchNorm
statistics).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.state import TrainState, model_variables


def probed_apply(
    state: TrainState, images: jax.Array, layer: str, delta: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """(logits f32[B, K], the output f32[B, h, w, c] of top-level layer `layer`), in inference
    mode. With `delta` (shaped like that output) the rest of the network sees output + delta,
    so the gradient with respect to `delta` at zero is the gradient with respect to the
    layer's output (what Grad-CAM needs), without changing the model."""
    captured = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and context.module.path == (layer,):
            captured["output"] = out
            if delta is not None:
                out = out + delta
        return out

    with nn.intercept_methods(interceptor):
        logits = state.apply_fn(model_variables(state), images, train=False)
    if "output" not in captured:
        raise ConfigError(
            f"the model has no top-level layer {layer!r}; its layers with feature maps are "
            f"{', '.join(name for name, _ in feature_layers(state, images[:1]))}."
        )
    return logits.astype(jnp.float32), captured["output"].astype(jnp.float32)


def feature_layers(state: TrainState, image: jax.Array) -> list[tuple[str, tuple[int, ...]]]:
    """(name, (h, w, c)) of every top-level layer whose output is a feature map, in the order
    the layers run, for an input batch `image` f32[1, H, W, C]. Runs the model once, eagerly
    (under `jax.jit` the captured dict would come back sorted by name: "BasicBlock_10" before
    "BasicBlock_2")."""
    _, captured = state.apply_fn(
        model_variables(state),
        image[:1],
        train=False,
        capture_intermediates=lambda module, method: method == "__call__" and len(module.path) == 1,
        mutable=["intermediates"],
    )
    layers = []
    for name, calls in captured.get("intermediates", {}).items():
        output = calls["__call__"][0]
        if hasattr(output, "ndim") and output.ndim == 4:
            layers.append((name, tuple(output.shape[1:])))
    return layers


def last_feature_layer(state: TrainState, image: jax.Array) -> str:
    """The last top-level layer with a feature map wider than 1x1 (Grad-CAM's usual layer: the
    finest map that has seen the whole network's computation)."""
    layers = [name for name, shape in feature_layers(state, image) if shape[0] * shape[1] > 1]
    if not layers:
        raise ConfigError("the model has no layer with a spatial feature map to look at.")
    return layers[-1]


class ReceptiveField(NamedTuple):
    """Where the input patch of unit (y, x) of a layer lies: rows `stride * y + offset` to
    `stride * y + offset + size` (exclusive; clip to the image), the same for columns."""

    size: int
    stride: int
    offset: int


def receptive_field(state: TrainState, image: jax.Array, layer: str) -> ReceptiveField:
    """The receptive field of `layer`'s units, measured rather than derived: the input pixels
    on which the centre unit's output depends (non-zero gradient, over 8 random inputs so
    that no ReLU pattern hides a pixel), for inputs shaped like `image` f32[1, H, W, C]."""
    height = image.shape[1]
    inputs = jax.random.normal(jax.random.key(0), (8, *image.shape[1:]))
    _, output = probed_apply(state, inputs[:1], layer)
    h, w = output.shape[1], output.shape[2]
    y, x = h // 2, w // 2

    def centre(images):
        _, out = probed_apply(state, images, layer)
        return out[:, y, x, :].sum()

    reach = np.asarray(jnp.abs(jax.jit(jax.grad(centre))(inputs)).sum((0, 2, 3))) > 0
    rows = np.flatnonzero(reach)
    stride = height // h
    start, stop = int(rows[0]), int(rows[-1]) + 1
    if 0 < start and stop < height:
        return ReceptiveField(stop - start, stride, start - stride * y)
    # Clipped by the image: the field reaches at least as far on the other side of the unit
    # (padding is symmetric but for a stride-2 "SAME" layer's extra row), an estimate that
    # only says the field is about as large as the image.
    middle = stride * y + (stride - 1) // 2
    half = max(middle - start, stop - 1 - middle)
    return ReceptiveField(2 * half + 1, stride, middle - half - stride * y)


def inside_units(field: ReceptiveField, grid: int, image: int) -> np.ndarray:
    """bool[grid]: which units along one side of a layer's `grid` see only pixels of an image
    `image` pixels wide through their receptive `field` (none of the zero padding)."""
    first = field.stride * np.arange(grid) + field.offset
    return (first >= 0) & (first + field.size <= image)


@functools.partial(jax.jit, static_argnames=("layer",))
def _channel_peaks(state, images, layer, allowed):
    _, output = probed_apply(state, images, layer)
    output = jnp.where(allowed[None, :, :, None], output, -jnp.inf)
    flat = output.reshape(output.shape[0], -1, output.shape[-1])  # [B, h * w, c]
    return flat.max(1), flat.argmax(1)


def top_activations(
    state: TrainState,
    images: jax.Array,
    layer: str,
    channels: list[int],
    count: int = 9,
    batch_size: int = 500,
    field: ReceptiveField | None = None,
) -> dict[int, list[tuple[int, int, int, float]]]:
    """For each of `channels` of `layer`, the `count` images of `images` f32[N, H, W, C] in
    which that channel's strongest response is strongest, best first, one place per image:
    (image index, y, x on the layer's grid, the response). Given the layer's receptive
    `field`, only units that see no padding count: next to the border a unit reads the zero
    padding, which many channels answer more strongly than any picture."""
    _, output = jax.eval_shape(lambda: probed_apply(state, images[:1], layer))
    height, width = output.shape[1], output.shape[2]
    allowed = np.ones((height, width), bool)
    if field is not None:
        rows = inside_units(field, height, images.shape[1])
        cols = inside_units(field, width, images.shape[2])
        if rows.any() and cols.any():
            allowed = rows[:, None] & cols[None, :]
    values, places = [], []
    for start in range(0, len(images), batch_size):
        value, place = _channel_peaks(
            state, images[start : start + batch_size], layer, jnp.asarray(allowed)
        )
        values.append(np.asarray(value))
        places.append(np.asarray(place))
    values, places = np.concatenate(values), np.concatenate(places)
    found = {}
    for channel in channels:
        if not 0 <= channel < values.shape[1]:
            raise ConfigError(
                f"layer {layer!r} has {values.shape[1]} channels, got channel {channel}; "
                f"choose channels in [0, {values.shape[1]})."
            )
        best = np.argsort(-values[:, channel], kind="stable")[:count]
        found[channel] = [
            (
                int(i),
                int(places[i, channel]) // width,
                int(places[i, channel]) % width,
                float(values[i, channel]),
            )
            for i in best
        ]
    return found


def gaussian_blur(images: jax.Array, sigma: float) -> jax.Array:
    """f32[B, H, W, C] blurred channel by channel with a Gaussian of `sigma` pixels (zero
    padding: the border fades to 0, which for normalised images is the data's mean colour)."""
    radius = max(1, math.ceil(2 * sigma))
    offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    bump = jnp.exp(-(offsets**2) / (2 * sigma**2))
    bump = bump / bump.sum()
    channels = images.shape[-1]
    kernel = jnp.tile(jnp.outer(bump, bump)[:, :, None, None], (1, 1, 1, channels))
    return jax.lax.conv_general_dilated(
        images,
        kernel,
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )


@functools.partial(
    jax.jit, static_argnames=("shape", "steps", "jitter", "blur_every", "blur_sigma")
)
def class_visualisations(
    state: TrainState,
    classes: jax.Array,
    shape: tuple[int, int, int],
    low: jax.Array,
    high: jax.Array,
    key: jax.Array,
    steps: int = 256,
    learning_rate: float = 0.1,
    jitter: int = 2,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    decay: float = 1e-3,
) -> tuple[jax.Array, jax.Array]:
    """Images f32[K, H, W, C] (model input) that the network takes for `classes` i32[K]: class
    model visualisation by gradient ascent from a near-blank (mean colour) start (Simonyan et
    al. 2014), on the class's log-probability rather than its logit (a higher logit can come
    with a lower probability when other classes' logits rise faster), with the regularisers
    that make the result look like an image rather than adversarial noise (Yosinski et al.
    2015): each step sees the image
    rolled by up to `jitter` pixels, every `blur_every` steps it is blurred (`blur_sigma`),
    each step shrinks it towards the mean colour by `decay`, and it stays within the pixel
    range `low`..`high` (f32[C], the normalised 0 and 255). Steps are normalised gradients of
    size `learning_rate` (mean absolute change per pixel). Also returns the network's class
    probabilities f32[K, num_classes] of the final images."""
    count = classes.shape[0]

    def score(images):
        logits = state.apply_fn(model_variables(state), images, train=False)
        log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
        return jnp.take_along_axis(log_p, classes[:, None], 1).sum()

    def step(index, images):
        shift = jax.random.randint(jax.random.fold_in(key, index), (2,), -jitter, jitter + 1)
        rolled = jnp.roll(images, (shift[0], shift[1]), axis=(1, 2))
        grads = jnp.roll(jax.grad(score)(rolled), (-shift[0], -shift[1]), axis=(1, 2))
        scale = jnp.abs(grads).mean(axis=(1, 2, 3), keepdims=True) + 1e-12
        images = (1 - decay) * images + learning_rate * grads / scale
        images = jnp.where(index % blur_every == 0, gaussian_blur(images, blur_sigma), images)
        return jnp.clip(images, low, high)

    start = 0.01 * jax.random.normal(jax.random.fold_in(key, steps), (count, *shape))
    images = jax.lax.fori_loop(0, steps, step, start)
    logits = state.apply_fn(model_variables(state), images, train=False)
    return images, jax.nn.softmax(logits.astype(jnp.float32))


def pixel_range(mean: Any, std: Any) -> tuple[jax.Array, jax.Array]:
    """(low, high) f32[C]: pixel values 0 and 255 after normalisation by `mean` / `std`."""
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    return -mean / std, (1 - mean) / std


def to_pixels(images: jax.Array, mean: Any, std: Any) -> np.ndarray:
    """Model input f32[B, H, W, C] back to uint8 pixels (the inverse of `normalize`)."""
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    return np.asarray(jnp.clip(jnp.round((images * std + mean) * 255), 0, 255)).astype(np.uint8)

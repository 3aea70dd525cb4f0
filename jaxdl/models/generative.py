"""Models that learn without labels and models that generate images: a convolutional
autoencoder, a variational autoencoder and a DCGAN generator / discriminator pair.

All are built from `jaxdl.nn`'s `Conv` and `ConvTranspose`, so the run's layer choice
(`layers`) serves them as it serves the classifiers. Images are NHWC with pixels in [0, 1]
(the autoencoders) or [-1, 1] (the GAN); sizes 28 (MNIST) and 32 (CIFAR-10) and any other that
halves to a small base (`base_size`).

    ConvAutoencoder   f32[B, H, W, C] -> reconstruction f32[B, H, W, C] in [0, 1]; `encode`
                      gives the code f32[B, code], `decode` takes it back
    VAE               f32[B, H, W, C] -> {"logits": f32[B, H, W, C] (Bernoulli), "mean",
                      "log_variance": f32[B, latent]}; the latent is sampled from the "sample"
                      RNG stream when one is given (training), else its mean
    DCGANGenerator    noise f32[B, latent] -> images f32[B, H, W, C] in [-1, 1] (tanh)
    DCGANDiscriminator images -> real-vs-generated logits f32[B]
    DCGAN             both, as the halves of one module (`jaxdl.adversarial` trains them)
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxdl.errors import ConfigError
from jaxdl.models.registry import register
from jaxdl.nn.conv import BatchNorm, Conv, ConvTranspose
from jaxdl.nn.dropout import example_keys


def base_size(image_size: int) -> tuple[int, int]:
    """(side of the smallest feature map, number of stride-2 stages): the image side halved
    while it is even and above 4 (28 -> 7 in 2 stages, 32 -> 4 in 3)."""
    if image_size < 4:
        raise ConfigError(f"image size {image_size} is too small; use images of 4x4 or more.")
    side, stages = image_size, 0
    while side % 2 == 0 and side > 4:
        side, stages = side // 2, stages + 1
    if stages == 0:
        raise ConfigError(
            f"image size {image_size} does not halve; use an even size such as 28 or 32."
        )
    return side, stages


def widths_for(stages: int, first: int) -> tuple[int, ...]:
    """Channel widths of the stride-2 stages, doubling from `first` (encoder order)."""
    return tuple(first * 2**i for i in range(stages))


class ConvEncoder(nn.Module):
    """f32[B, H, W, C] -> f32[B, outputs]: stride-2 3x3 convolutions (ReLU) down to the base
    size (`base_size`), doubling from `width` channels, then a linear layer."""

    outputs: int
    width: int = 32
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _, stages = base_size(x.shape[1])
        for features in widths_for(stages, self.width):
            x = nn.relu(Conv(features, 3, 2, dtype=self.dtype, layers=self.layers)(x))
        return nn.Dense(self.outputs, dtype=self.dtype)(x.reshape(x.shape[0], -1))


class ConvDecoder(nn.Module):
    """f32[B, code] -> f32[B, H, W, channels] (linear outputs): a linear layer to the base
    size, then stride-2 4x4 transposed convolutions (ReLU between), halving the channels down
    to `width`, the last one to `channels`."""

    image_size: int
    channels: int
    width: int = 32
    dtype: Any = jnp.float32
    layers: str = "auto"

    @nn.compact
    def __call__(self, code: jax.Array) -> jax.Array:
        side, stages = base_size(self.image_size)
        widths = widths_for(stages, self.width)[::-1]
        x = nn.relu(nn.Dense(side * side * widths[0], dtype=self.dtype)(code))
        x = x.reshape(code.shape[0], side, side, widths[0])
        for features in widths[1:]:
            x = nn.relu(ConvTranspose(features, 4, 2, dtype=self.dtype, layers=self.layers)(x))
        return ConvTranspose(self.channels, 4, 2, dtype=self.dtype, layers=self.layers)(x)


def _check_size(model: nn.Module, x: jax.Array) -> None:
    if x.shape[1:3] != (model.image_size, model.image_size):
        raise ConfigError(
            f"{type(model).__name__} was built for {model.image_size}x{model.image_size} "
            f"images but got {x.shape[1]}x{x.shape[2]}; set image_size={x.shape[1]}."
        )


class ConvAutoencoder(nn.Module):
    """A convolutional autoencoder with a `code`-dimensional bottleneck (see the module
    docstring). `num_classes` is the number of image channels it reconstructs."""

    num_classes: int = 1
    code: int = 32
    image_size: int = 28
    width: int = 32
    dtype: Any = jnp.float32
    layers: str = "auto"

    def setup(self):
        self.encoder = ConvEncoder(self.code, self.width, self.dtype, self.layers)
        self.decoder = ConvDecoder(
            self.image_size, self.num_classes, self.width, self.dtype, self.layers
        )

    def encode(self, images: jax.Array) -> jax.Array:
        """f32[B, H, W, C] -> codes f32[B, code]."""
        _check_size(self, images)
        return self.encoder(images.astype(self.dtype))

    def decode(self, codes: jax.Array) -> jax.Array:
        """codes f32[B, code] -> reconstructions f32[B, H, W, C] in [0, 1]."""
        return nn.sigmoid(self.decoder(codes))

    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        return self.decode(self.encode(images))


class VAE(nn.Module):
    """A variational autoencoder (Kingma & Welling 2014) with a Gaussian `latent`, a standard
    normal prior and a Bernoulli decoder (see the module docstring). The reparameterised
    sample mean + exp(log_variance / 2) * noise draws its noise per example from the "sample"
    stream folded with the example's global position (as `jaxdl.nn.Dropout`), so every
    parallel mode draws the same."""

    num_classes: int = 1
    latent: int = 32
    image_size: int = 28
    width: int = 32
    axis_name: str | None = None  # the pmap axis, for the per-example noise
    dtype: Any = jnp.float32
    layers: str = "auto"

    def setup(self):
        self.encoder = ConvEncoder(2 * self.latent, self.width, self.dtype, self.layers)
        self.decoder = ConvDecoder(
            self.image_size, self.num_classes, self.width, self.dtype, self.layers
        )

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """f32[B, H, W, C] -> (mean, log_variance), each f32[B, latent]."""
        _check_size(self, images)
        mean, log_variance = jnp.split(self.encoder(images.astype(self.dtype)), 2, axis=-1)
        return mean, log_variance

    def decode(self, latents: jax.Array) -> jax.Array:
        """latents f32[B, latent] -> Bernoulli logits f32[B, H, W, C]."""
        return self.decoder(latents)

    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        mean, log_variance = self.encode(images)
        latents = mean
        if self.has_rng("sample"):
            keys = example_keys(self.make_rng("sample"), images.shape[0], self.axis_name)
            noise = jax.vmap(lambda key: jax.random.normal(key, (self.latent,)))(keys)
            latents = mean + jnp.exp(0.5 * log_variance) * noise.astype(mean.dtype)
        return {"logits": self.decode(latents), "mean": mean, "log_variance": log_variance}


class DCGANGenerator(nn.Module):
    """Noise f32[B, latent] -> images f32[B, H, W, channels] in [-1, 1] (Radford et al. 2016):
    a linear layer to the base size (`base_size`) with `width` x 2^(stages-1) channels, then
    stride-2 4x4 transposed convolutions halving the channels, BatchNorm + ReLU between, tanh
    at the end. `depth` stride-1 3x3 convolutions (BatchNorm + ReLU) follow the linear layer
    and every transposed convolution but the last. `num_classes` is the number of image
    channels."""

    num_classes: int = 1
    image_size: int = 28
    width: int = 64
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"
    depth: int = 0

    @nn.compact
    def __call__(self, noise: jax.Array, train: bool = False) -> jax.Array:
        side, stages = base_size(self.image_size)
        widths = widths_for(stages, self.width)[::-1]
        norm = functools.partial(
            BatchNorm, axis_name=self.axis_name, dtype=self.dtype, layers=self.layers
        )
        conv = functools.partial(Conv, use_bias=False, dtype=self.dtype, layers=self.layers)
        x = nn.Dense(side * side * widths[0], use_bias=False, dtype=self.dtype)(noise)
        x = nn.relu(norm()(x.reshape(noise.shape[0], side, side, widths[0]), train))
        for index, features in enumerate(widths):
            if index:
                x = ConvTranspose(
                    features, 4, 2, use_bias=False, dtype=self.dtype, layers=self.layers
                )(x)
                x = nn.relu(norm()(x, train))
            for _ in range(self.depth):
                x = nn.relu(norm()(conv(features, 3)(x), train))
        x = ConvTranspose(self.num_classes, 4, 2, dtype=self.dtype, layers=self.layers)(x)
        return jnp.tanh(x)


def minibatch_std(x: jax.Array, axis_name: str | None = None) -> jax.Array:
    """f32[B, H, W, C] -> f32[B, H, W, C + 1]: the features with one more channel holding the
    batch's mean standard deviation over examples (Karras et al. 2018), over the whole batch
    across `axis_name`'s devices. A discriminator that sees it can tell a generated batch of
    look-alikes from a varied real one, which BatchNorm's per-batch normalisation hides."""
    mean = jnp.mean(x, axis=0, keepdims=True)
    mean = mean if axis_name is None else lax.pmean(mean, axis_name)
    variance = jnp.mean(jnp.square(x - mean), axis=0, keepdims=True)
    variance = variance if axis_name is None else lax.pmean(variance, axis_name)
    spread = jnp.mean(jnp.sqrt(variance + 1e-8))
    return jnp.concatenate([x, jnp.broadcast_to(spread, (*x.shape[:-1], 1)).astype(x.dtype)], -1)


class DCGANDiscriminator(nn.Module):
    """Images f32[B, H, W, C] -> logits f32[B] (real: positive): stride-2 4x4 convolutions
    doubling from `width` channels with leaky ReLU (0.2), BatchNorm after all but the first,
    then (`batch_spread`) the minibatch standard deviation as one more feature map
    (`minibatch_std`), then a linear layer (Radford et al. 2016). `depth` stride-1 3x3
    convolutions (BatchNorm + leaky ReLU) follow each stride-2 one."""

    num_classes: int = 1
    width: int = 64
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"
    batch_spread: bool = True
    depth: int = 0

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        _, stages = base_size(images.shape[1])
        x = images.astype(self.dtype)
        norm = functools.partial(
            BatchNorm, axis_name=self.axis_name, dtype=self.dtype, layers=self.layers
        )
        for index, features in enumerate(widths_for(stages, self.width)):
            x = Conv(features, 4, 2, use_bias=index == 0, dtype=self.dtype, layers=self.layers)(x)
            if index:
                x = norm()(x, train)
            x = nn.leaky_relu(x, 0.2)
            for _ in range(self.depth):
                x = Conv(features, 3, 1, use_bias=False, dtype=self.dtype, layers=self.layers)(x)
                x = nn.leaky_relu(norm()(x, train), 0.2)
        if self.batch_spread:
            x = minibatch_std(x, self.axis_name if train else None)  # (as BatchNorm's)
        return nn.Dense(1, dtype=self.dtype)(x.reshape(x.shape[0], -1))[:, 0]


class DCGAN(nn.Module):
    """A generator and a discriminator as the two halves of one module, so one run holds one
    model: `method="generate"` (noise f32[B, latent] -> images in [-1, 1]) and
    `method="discriminate"` (images -> logits f32[B]); calling it runs both (initialisation).
    Parameters and BatchNorm statistics sit under "generator" and "discriminator"; the
    two-player state and step (`jaxdl.adversarial`) update each half on its own. `num_classes`
    is the number of image channels; `width` and `discriminator_width` the first stage's
    channels of each; `batch_spread` gives the discriminator the minibatch standard
    deviation; `depth` adds that many stride-1 3x3 convolutions at every stage of both."""

    num_classes: int = 1
    image_size: int = 28
    latent: int = 64
    width: int = 64
    discriminator_width: int = 64
    axis_name: str | None = None
    dtype: Any = jnp.float32
    layers: str = "auto"
    batch_spread: bool = True
    depth: int = 0

    def setup(self):
        for name in ("latent", "width", "discriminator_width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DCGAN {name} must be at least 1, got {getattr(self, name)}.")
        if self.depth < 0:
            raise ConfigError(f"DCGAN depth must be 0 or more, got {self.depth}.")
        self.generator = DCGANGenerator(
            self.num_classes,
            self.image_size,
            self.width,
            self.axis_name,
            self.dtype,
            self.layers,
            self.depth,
        )
        self.discriminator = DCGANDiscriminator(
            self.num_classes,
            self.discriminator_width,
            self.axis_name,
            self.dtype,
            self.layers,
            self.batch_spread,
            self.depth,
        )

    def generate(self, noise: jax.Array, train: bool = False) -> jax.Array:
        return self.generator(noise, train)

    def discriminate(self, images: jax.Array, train: bool = False) -> jax.Array:
        _check_size(self, images)
        return self.discriminator(images, train)

    def __call__(self, noise: jax.Array, train: bool = False) -> jax.Array:
        return self.discriminate(self.generate(noise, train), train)


register("conv_autoencoder", ConvAutoencoder)
register("vae", VAE)
register("dcgan_generator", DCGANGenerator)
register("dcgan_discriminator", DCGANDiscriminator)
register("dcgan", DCGAN)

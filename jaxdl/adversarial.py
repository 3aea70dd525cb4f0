"""Two-player training (a GAN) on the one-step contract: one pure state, one pure jitted step.

    state, metrics = gan_train_step(state, batch)

`GANState` holds both networks: the generator's and the discriminator's parameters,
BatchNorm statistics and optimizer states, each in a `TrainState` of its own, so an update of
one never touches the other's. Both networks are the halves of one Flax module (a
`jaxdl.models.generative.DCGAN`): `method="generate"` maps noise to images, `method=
"discriminate"` images to real-vs-generated logits.

A step is the usual alternating pair (Goodfellow et al. 2014): the discriminator half, one
update on the batch's real images and as many generated ones, then the generator half, one
update of the non-saturating loss -log D(G(z)) through the updated discriminator. Options:
one-sided label smoothing (the real images' target is 1 - `label_smoothing`; Salimans et al.
2016) and an exponential moving average of the generator's parameters (`average_decay`;
Yazıcı et al. 2019; ProGAN, StyleGAN and BigGAN sample from one), which samples and scores
are drawn from (`GANState.sampler`): the live generator's weights circle as the two players
chase each other, and their average draws cleaner images. The noise comes from the run key
folded with the step and each example's position in the global batch (as
`jaxdl.nn.Dropout`), so `single`, `pmap` and `sharded` runs draw the same; under `jax.pmap`
gradients, BatchNorm statistics and metrics are averaged over `axis_name`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax import lax

from jaxdl.errors import ConfigError
from jaxdl.nn.dropout import example_keys
from jaxdl.state import TrainState


class GANState(struct.PyTreeNode):
    """`step` (the pair's update count), `generator` and `discriminator` (each a `TrainState`:
    params, batch_stats, opt_state; the same static `apply_fn`, the pair module's),
    `generator_average` (the moving average of the generator's params), `rng` (the run's base
    key), `latent` (static: the noise width) and `average_decay` (static: the average's
    decay; 0 keeps it equal to the live params)."""

    step: jax.Array
    generator: TrainState
    discriminator: TrainState
    generator_average: Any
    rng: jax.Array
    latent: int = struct.field(pytree_node=False)
    average_decay: float = struct.field(pytree_node=False, default=0.0)

    @property
    def sampler(self) -> TrainState:
        """The generator that samples and scores are drawn from: the live one's BatchNorm
        statistics with the averaged parameters."""
        return self.generator.replace(params=self.generator_average)

    @property
    def params(self) -> dict[str, Any]:
        """Both networks' parameters, as the pair module holds them."""
        return {"generator": self.generator.params, "discriminator": self.discriminator.params}

    @property
    def batch_stats(self) -> dict[str, Any]:
        return {
            "generator": self.generator.batch_stats,
            "discriminator": self.discriminator.batch_stats,
        }


def create_gan_state(
    model: nn.Module,
    generator_tx: optax.GradientTransformation,
    discriminator_tx: optax.GradientTransformation,
    rng: jax.Array,
    image_shape: tuple[int, ...],
    average_decay: float = 0.0,
) -> GANState:
    """A fresh state for the pair `model` (with a `latent` field) on images of `image_shape`
    (H, W, C); `average_decay` in [0, 1) is the generator average's (see the module
    docstring)."""
    if not 0.0 <= average_decay < 1.0:
        raise ConfigError(
            f"the generator average's decay must be in [0, 1), got {average_decay}; "
            f"0.999 is usual, 0 turns the average off."
        )
    init_key, step_key = jax.random.split(rng)
    noise = jnp.zeros((1, model.latent), jnp.float32)
    del image_shape  # the pair's own image_size decides the shapes; checked by the caller
    variables = jax.jit(lambda key: model.init(key, noise, train=False))(init_key)
    params, stats = variables["params"], variables.get("batch_stats", {})

    def half(name: str, tx: optax.GradientTransformation) -> TrainState:
        return TrainState.create(
            apply_fn=model.apply,
            params=params[name],
            batch_stats=stats.get(name, {}),
            tx=tx,
            rng=None,
        )

    generator = half("generator", generator_tx)
    return GANState(
        step=jnp.zeros((), jnp.int32),
        generator=generator,
        discriminator=half("discriminator", discriminator_tx),
        generator_average=jax.tree.map(jnp.copy, generator.params),
        rng=step_key,
        latent=model.latent,
        average_decay=average_decay,
    )


def averaged(state: GANState) -> Any:
    """The generator average after this step's update: decay min(`average_decay`, (1 + n) /
    (10 + n)) at step n, so the early average follows the fast-moving start (as TensorFlow's
    ExponentialMovingAverage with `num_updates`); equal to the live params at decay 0."""
    if state.average_decay == 0.0:
        return state.generator.params
    step = state.step.astype(jnp.float32)
    decay = jnp.minimum(state.average_decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(
        lambda average, live: decay * average + (1.0 - decay) * live,
        state.generator_average,
        state.generator.params,
    )


def noise_for_step(state: GANState, batch_size: int, axis_name: str | None = None) -> jax.Array:
    """This step's generator input f32[batch_size, latent]: standard normal, each example's
    from the run key folded with the step and its global position."""
    key = jax.random.fold_in(state.rng, state.step)
    keys = example_keys(key, batch_size, axis_name)
    return jax.vmap(lambda k: jax.random.normal(k, (state.latent,)))(keys)


def _variables(network: TrainState, name: str) -> dict[str, Any]:
    return {"params": {name: network.params}, "batch_stats": {name: network.batch_stats}}


def generate(generator: TrainState, noise: jax.Array, train: bool = False):
    """Images f32[B, H, W, C] in [-1, 1] from noise f32[B, latent]; in training also the
    generator's new BatchNorm statistics."""
    variables = _variables(generator, "generator")
    if not train:
        return generator.apply_fn(variables, noise, train=False, method="generate")
    images, updates = generator.apply_fn(
        variables, noise, train=True, method="generate", mutable=["batch_stats"]
    )
    return images, updates["batch_stats"]["generator"]


def discriminate(discriminator: TrainState, images: jax.Array, train: bool = False):
    """Logits f32[B] (real: positive) of images f32[B, H, W, C]; in training also the new
    BatchNorm statistics."""
    variables = _variables(discriminator, "discriminator")
    if not train:
        return discriminator.apply_fn(variables, images, train=False, method="discriminate")
    logits, updates = discriminator.apply_fn(
        variables, images, train=True, method="discriminate", mutable=["batch_stats"]
    )
    return logits, updates["batch_stats"]["discriminator"]


def _mean_over(tree, axis_name: str | None):
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def _finite(*trees) -> jax.Array:
    leaves = [leaf for tree in trees for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _update_if(finite: jax.Array, network: TrainState, grads, batch_stats) -> TrainState:
    """`network` after one optimizer step on `grads` (with its new BatchNorm statistics), or
    unchanged where anything is not finite."""
    updated = network.apply_gradients(grads=grads, batch_stats=batch_stats)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
    return updated.replace(
        step=jnp.where(finite, updated.step, network.step),
        params=keep(updated.params, network.params),
        opt_state=keep(updated.opt_state, network.opt_state),
        batch_stats=keep(updated.batch_stats, network.batch_stats),
    )


def discriminator_half(
    state: GANState,
    real: jax.Array,
    fake: jax.Array,
    *,
    axis_name: str | None = None,
    label_smoothing: float = 0.0,
) -> tuple[GANState, dict[str, jax.Array]]:
    """One discriminator update on real images and generated ones (both f32[B, H, W, C]):
    binary cross-entropy, real target 1 - `label_smoothing`, generated 0. Only the
    discriminator's parameters, statistics and optimizer state change."""
    disc = state.discriminator

    def loss_fn(params):
        network = disc.replace(params=params)
        real_logits, stats = discriminate(network, real, train=True)
        fake_logits, stats = discriminate(network.replace(batch_stats=stats), fake, train=True)
        real_loss = optax.sigmoid_binary_cross_entropy(
            real_logits, jnp.full_like(real_logits, 1.0 - label_smoothing)
        )
        fake_loss = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
        loss = jnp.mean(real_loss) + jnp.mean(fake_loss)
        figures = {
            "d_loss": loss,
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        }
        return loss, (figures, stats)

    grads, (metrics, stats) = jax.grad(loss_fn, has_aux=True)(disc.params)
    grads, metrics, stats = _mean_over((grads, metrics, stats), axis_name)
    finite = jnp.isfinite(metrics["d_loss"]) & _finite(grads)
    metrics["d_skipped"] = 1.0 - finite.astype(jnp.float32)
    return state.replace(discriminator=_update_if(finite, disc, grads, stats)), metrics


def generator_half(
    state: GANState, noise: jax.Array, *, axis_name: str | None = None
) -> tuple[GANState, dict[str, jax.Array]]:
    """One generator update of the non-saturating loss -log D(G(noise)) through the current
    discriminator (in training mode, its statistics left as they are). Only the generator's
    parameters, statistics and optimizer state change."""
    gen = state.generator

    def loss_fn(params):
        images, stats = generate(gen.replace(params=params), noise, train=True)
        logits, _ = discriminate(state.discriminator, images, train=True)
        loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.ones_like(logits)))
        return loss, stats

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(gen.params)
    grads, loss, stats = _mean_over((grads, loss, stats), axis_name)
    finite = jnp.isfinite(loss) & _finite(grads)
    metrics = {"g_loss": loss, "g_skipped": 1.0 - finite.astype(jnp.float32)}
    return state.replace(generator=_update_if(finite, gen, grads, stats)), metrics


def gan_train_step(
    state: GANState,
    batch: dict[str, jax.Array],
    *,
    axis_name: str | None = None,
    label_smoothing: float = 0.0,
) -> tuple[GANState, dict[str, jax.Array]]:
    """The discriminator half on `batch["image"]` (real images in [-1, 1]) and a generated
    batch of the same size, then the generator half on the same noise, then the generator
    average's update (a skipped half leaves the params, so the average moves towards the
    same params). Returns the new state
    and `{"d_loss", "g_loss", "d_real", "d_fake", "skipped"}` (`d_real` / `d_fake`: the
    discriminator's mean probability of "real" on each; `skipped` 1.0 when either half was
    dropped for a non-finite loss or gradient)."""
    real = batch["image"]
    noise = noise_for_step(state, real.shape[0], axis_name)
    fake = lax.stop_gradient(generate(state.generator, noise, train=True)[0])
    state, d_metrics = discriminator_half(
        state, real, fake, axis_name=axis_name, label_smoothing=label_smoothing
    )
    state, g_metrics = generator_half(state, noise, axis_name=axis_name)
    skipped = jnp.maximum(d_metrics.pop("d_skipped"), g_metrics.pop("g_skipped"))
    state = state.replace(generator_average=averaged(state), step=state.step + 1)
    return state, {**d_metrics, **g_metrics, "skipped": skipped}

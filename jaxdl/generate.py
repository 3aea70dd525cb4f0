"""Generating sequences from a trained model, as one jitted loop over positions.

Both functions fill a fixed-length buffer left to right inside `lax.fori_loop`: at position t
the model runs on the whole buffer and position t - 1's logits choose token t. A causal model's
logits at t - 1 depend on tokens 0..t - 1 only, so the not-yet-written tail of the buffer
changes nothing (tests check this against a step-by-step reference); the cost is one forward
pass per generated token, with one compiled program for every prompt of the same shape.

`apply_fn` is the model's `apply` (`model.apply` or a train state's `apply_fn`), static under
`jax.jit` (one compile per model), and `variables` its variables: a language model maps tokens
i32[B, L] to logits f32[B, L, V]; a translator (`jaxdl.models.sequence.Seq2SeqTransformer`)
maps source and target side by side, i32[B, S + T], to target logits f32[B, T, V].
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax


def choose(logits: jax.Array, key: jax.Array, temperature: float, top_k: int) -> jax.Array:
    """i32[B] from logits f32[B, V]: the argmax when `temperature` is 0 (greedy), else a draw
    from softmax(logits / temperature), restricted to the `top_k` likeliest tokens when
    `top_k` > 0."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k:
        kth = lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("apply_fn", "length", "temperature", "top_k"))
def sample(
    apply_fn: Callable,
    variables: dict,
    prompt: jax.Array,
    key: jax.Array,
    *,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
) -> jax.Array:
    """i32[B, length]: the prompt i32[B, P] (P >= 1) continued to `length` tokens by a causal
    language model (`choose` picks each token; temperature 0 is greedy)."""
    batch, start = prompt.shape
    if not 1 <= start <= length:
        raise ValueError(f"the prompt's {start} tokens must be between 1 and length {length}.")
    buffer = jnp.zeros((batch, length), jnp.int32).at[:, :start].set(prompt)

    def write(position, buffer):
        logits = apply_fn(variables, buffer)[:, position - 1]
        token = choose(logits, jax.random.fold_in(key, position), temperature, top_k)
        return buffer.at[:, position].set(token)

    return lax.fori_loop(start, length, write, buffer)


@functools.partial(jax.jit, static_argnames=("apply_fn", "length", "start_token"))
def greedy_decode(
    apply_fn: Callable, variables: dict, source: jax.Array, *, length: int, start_token: int
) -> jax.Array:
    """i32[B, length]: a translator's greedy output for `source` i32[B, S]. The decoder's input
    is the target shifted right, `start_token` first: position t's logits predict output token
    t from output tokens 0..t - 1."""
    shifted = jnp.zeros((source.shape[0], length), jnp.int32).at[:, 0].set(start_token)

    def logits_at(shifted, position):
        return apply_fn(variables, jnp.concatenate([source, shifted], axis=1))[:, position]

    def write(position, shifted):
        token = jnp.argmax(logits_at(shifted, position - 1), -1).astype(jnp.int32)
        return shifted.at[:, position].set(token)

    shifted = lax.fori_loop(1, length, write, shifted)
    last = jnp.argmax(logits_at(shifted, length - 1), -1).astype(jnp.int32)
    return jnp.concatenate([shifted[:, 1:], last[:, None]], axis=1)

"""An LSTM layer's time loop with a hand-written backward pass: `lstm_sequence`.

Differentiating a `lax.scan` over LSTM steps makes JAX accumulate the recurrent kernel's
gradient inside the reverse loop: at every step a [h, B] x [B, 4h] product and a [h, 4h] add,
T small matrix products where one large one would do. Here the reverse loop carries only the
hidden and cell gradients and emits each step's gate gradients; the kernel's gradient is then
one product over all B·T positions, and the input gates' gradient is the emitted gradients
themselves; the recurrent kernel is transposed once, not at every step. A training step of
`char_lstm` (2 x 256, batch 64, 256 steps) runs 1.26x as fast this way (BENCHMARKS.md,
`benchmarks.lstm_step`). The values are the plain scan's: tests/test_sequence.py checks
outputs and gradients against a Python loop over `jaxdl.nn.recurrent.LSTMCell` and against
finite differences.

Gates are laid out [input, forget, candidate, output], each h wide, as `LSTMCell`'s are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _activations(gates: jax.Array) -> jax.Array:
    """Pre-activation gates f[..., 4h] -> sigmoid(i, f), tanh(g), sigmoid(o), same shape."""
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    return jnp.concatenate(
        [jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)], axis=-1
    )


def _forward(input_gates, kernel, c0, h0):
    def step(carry, gx):
        c, h = carry
        acts = _activations(gx + h @ kernel)
        i, f, g, o = jnp.split(acts, 4, axis=-1)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (c, h), (h, c, acts)

    (c, h), (hs, cs, acts) = lax.scan(step, (c0, h0), jnp.swapaxes(input_gates, 0, 1))
    return (c, h), (hs, cs, acts)


def lstm_sequence_autodiff(
    input_gates: jax.Array, kernel: jax.Array, c0: jax.Array, h0: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`lstm_sequence` differentiated by JAX through its scan (the reference, and the
    baseline of `benchmarks.lstm_step`)."""
    (c, h), (hs, _, _) = _forward(input_gates, kernel, c0, h0)
    return jnp.swapaxes(hs, 0, 1), c, h


@jax.custom_vjp
def lstm_sequence(
    input_gates: jax.Array, kernel: jax.Array, c0: jax.Array, h0: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Run an LSTM over time: input_gates f32[B, T, 4h] (the inputs already multiplied by the
    input kernel, bias added), recurrent kernel f32[h, 4h], initial cell and hidden states
    f32[B, h]. Returns the hidden states f32[B, T, h] and the final (c, h), each f32[B, h]."""
    return lstm_sequence_autodiff(input_gates, kernel, c0, h0)


def _lstm_forward(input_gates, kernel, c0, h0):
    (c, h), (hs, cs, acts) = _forward(input_gates, kernel, c0, h0)
    return (jnp.swapaxes(hs, 0, 1), c, h), (kernel, c0, h0, hs, cs, acts)


def _lstm_backward(residuals, cotangents):
    kernel, c0, h0, hs, cs, acts = residuals
    d_outputs, dc_last, dh_last = cotangents
    c_before = jnp.concatenate([c0[None], cs[:-1]])  # c_{t-1} for every step t
    h_before = jnp.concatenate([h0[None], hs[:-1]])

    def step(carry, xs):
        dh_next, dc_next = carry
        d_output, acts_t, c_t, c_prev = xs
        i, f, g, o = jnp.split(acts_t, 4, axis=-1)
        tanh_c = jnp.tanh(c_t)
        dh = d_output + dh_next
        dc = dc_next + dh * o * (1 - tanh_c**2)
        d_gates = jnp.concatenate(
            [
                dc * g * i * (1 - i),
                dc * c_prev * f * (1 - f),
                dc * i * (1 - g**2),
                dh * tanh_c * o * (1 - o),
            ],
            axis=-1,
        )
        return (d_gates @ kernel_t, dc * f), d_gates

    kernel_t = kernel.T  # once, not in every step
    xs = (jnp.swapaxes(d_outputs, 0, 1), acts, cs, c_before)
    (dh0, dc0), d_gates = lax.scan(step, (dh_last, dc_last), xs, reverse=True)
    d_kernel = jnp.einsum("tbh,tbg->hg", h_before, d_gates)
    return jnp.swapaxes(d_gates, 0, 1), d_kernel, dc0, dh0


lstm_sequence.defvjp(_lstm_forward, _lstm_backward)

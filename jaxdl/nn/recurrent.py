"""Recurrent layers: Elman RNN, LSTM and GRU cells run over time by `flax.linen.RNN` (a
`lax.scan`, never a Python loop), stacked and bidirectional, with padding masks.

Cells: flax's `SimpleCell` (the Elman RNN, tanh or sigmoid) and `GRUCell` as they are; the LSTM
is written here because flax's `LSTMCell` takes one bias initialiser for all four gates and the
usual choice is a forget-gate bias of 1 (Gers et al. 2000; Jozefowicz et al. 2015), so that a
fresh LSTM remembers by default. It is fused: one input and one recurrent matrix for the four
gates, so a step is two matrix products.

Parameter counts for input width x and hidden width h (the tests check them):

- LSTM: input kernel [x, 4h] with bias [4h] and recurrent kernel [h, 4h]: 4·h·(x + h) + 4·h;
- GRU (flax's layout): input kernels [x, h] for the reset, update and candidate gates, with
  biases; recurrent kernels [h, h] for all three, the candidate's with a bias: 3·h·(x + h) + 4·h;
- RNN: input kernel [x, h] with bias, recurrent kernel [h, h]: h·(x + h) + h.

Variable lengths: `lengths` i32[B] gives each sequence's real steps; the padding after them
never changes a real step's output (the scan runs forwards), the final state is the one at the
last real step, and the backward direction of a bidirectional layer reverses only the real steps
(flax's `seq_lengths`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import ConfigError

CELLS = ("rnn", "lstm", "gru")
RNN_ACTIVATIONS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}


def forget_bias_init(value: float = 1.0):
    """Bias initialiser for the fused gates [input, forget, candidate, output] of width 4h:
    `value` on the forget gate's h entries, zero elsewhere."""

    def init(key, shape, dtype=jnp.float32):
        del key
        hidden = shape[-1] // 4
        return jnp.zeros(shape, dtype).at[..., hidden : 2 * hidden].set(value)

    return init


class LSTMCell(nn.RNNCellBase):
    """One LSTM step (Hochreiter & Schmidhuber 1997, with a forget gate): carry (c, h), each
    f32[B, features]; input f32[B, x]; returns ((c', h'), h'). Parameters: `input` (kernel
    [x, 4h], bias [4h], forget part initialised to `forget_bias`) and `recurrent` (kernel
    [h, 4h], orthogonal init, no bias)."""

    features: int
    forget_bias: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, carry, inputs):
        c, h = carry
        gates = nn.Dense(
            4 * self.features,
            bias_init=forget_bias_init(self.forget_bias),
            dtype=self.dtype,
            name="input",
        )(inputs) + nn.Dense(
            4 * self.features,
            use_bias=False,
            kernel_init=nn.initializers.orthogonal(),
            dtype=self.dtype,
            name="recurrent",
        )(h)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        del rng
        shape = (*input_shape[:-1], self.features)
        return jnp.zeros(shape, self.dtype), jnp.zeros(shape, self.dtype)

    @property
    def num_feature_axes(self) -> int:
        return 1


def make_cell(
    kind: str, features: int, activation: str = "tanh", dtype: Any = jnp.float32, name=None
):
    """The cell called `kind` (one of `CELLS`) with `features` hidden units; `activation` is
    the RNN's ("tanh" or "sigmoid"; the gated cells have their own)."""
    if kind not in CELLS:
        raise ConfigError(f"unknown recurrent cell {kind!r}; choose one of {', '.join(CELLS)}.")
    if kind == "lstm":
        return LSTMCell(features, dtype=dtype, name=name)
    if kind == "gru":
        return nn.GRUCell(features, dtype=dtype, name=name)
    if activation not in RNN_ACTIVATIONS:
        raise ConfigError(
            f"unknown RNN activation {activation!r}; choose one of {', '.join(RNN_ACTIVATIONS)}."
        )
    return nn.SimpleCell(
        features, activation_fn=RNN_ACTIVATIONS[activation], dtype=dtype, name=name
    )


def hidden_state(carry) -> jax.Array:
    """The hidden state h of a cell's carry (an LSTM's carry is (c, h))."""
    return carry[1] if isinstance(carry, tuple) else carry


class Recurrent(nn.Module):
    """`num_layers` stacked recurrent layers of `kind` over f32[B, T, x]: returns the top layer's
    outputs f32[B, T, H] and its final hidden state f32[B, H] (at each sequence's last real
    step), H = `features`, doubled when `bidirectional` (forward and backward concatenated;
    the backward direction's final state is the one after reading the sequence's first step).
    `lengths` i32[B] marks the real steps (None: all T)."""

    kind: str
    features: int
    num_layers: int = 1
    bidirectional: bool = False
    activation: str = "tanh"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array | None = None):
        if self.num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, got {self.num_layers}.")
        final = None
        for layer in range(self.num_layers):
            forward = nn.RNN(
                make_cell(
                    self.kind, self.features, self.activation, self.dtype, f"forward_{layer}"
                ),
                return_carry=True,
            )
            carry, outputs = forward(x, seq_lengths=lengths)
            final = hidden_state(carry)
            if self.bidirectional:
                cell = make_cell(
                    self.kind, self.features, self.activation, self.dtype, f"backward_{layer}"
                )
                backward = nn.RNN(cell, return_carry=True, reverse=True, keep_order=True)
                back_carry, back_outputs = backward(x, seq_lengths=lengths)
                outputs = jnp.concatenate([outputs, back_outputs], axis=-1)
                final = jnp.concatenate([final, hidden_state(back_carry)], axis=-1)
            x = outputs
        return x, final

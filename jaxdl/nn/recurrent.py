"""Recurrent layers: Elman RNN, LSTM and GRU cells run over time by `flax.linen.RNN` (a
`lax.scan`, never a Python loop), stacked and bidirectional, with padding masks.

Cells: flax's `SimpleCell` (the Elman RNN, tanh or sigmoid) and `GRUCell` as they are; the LSTM
is written here because flax's `LSTMCell` takes one bias initialiser for all four gates and the
usual choice is a forget-gate bias of 1 (Gers et al. 2000; Jozefowicz et al. 2015), so that a
fresh LSTM remembers by default. It is fused: one input and one recurrent matrix for the four
gates; a layer multiplies the whole sequence by the input matrix before its scan, so a step
of the scan is one matrix product.

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
from jaxdl.ops.lstm import lstm_sequence

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


class Kernel(nn.Module):
    """A bare weight matrix of `shape`, under the name "kernel" (as a bias-free `nn.Dense`
    holds it), for layers that multiply by it themselves."""

    shape: tuple[int, int]
    init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param("kernel", self.init, self.shape)


class LSTMCell(nn.RNNCellBase):
    """One LSTM step (Hochreiter & Schmidhuber 1997, with a forget gate): carry (c, h), each
    f32[B, features]; input f32[B, x]; returns ((c', h'), h'). Parameters: `input` (kernel
    [x, 4h], bias [4h], forget part initialised to `forget_bias`) and `recurrent` (kernel
    [h, 4h], orthogonal init, no bias).

    A step is `recur(carry, project(inputs))`. The input half does not depend on the carry,
    so a layer can `project` a whole sequence f32[B, T, x] in one matrix product before the
    scan and scan only `recur` (`projected_inputs=True`: the call's inputs are then the
    projected gates f32[B, 4h]); the values are the same, and the one large product runs
    far faster than T small ones."""

    features: int
    forget_bias: float = 1.0
    dtype: Any = jnp.float32
    projected_inputs: bool = False

    def setup(self):
        self.input = nn.Dense(
            4 * self.features, bias_init=forget_bias_init(self.forget_bias), dtype=self.dtype
        )
        self.recurrent = Kernel((self.features, 4 * self.features), nn.initializers.orthogonal())

    def project(self, inputs: jax.Array) -> jax.Array:
        """The input half of the gates, f32[..., x] -> f32[..., 4h]."""
        return self.input(inputs)

    def recurrent_kernel(self) -> jax.Array:
        """The recurrent kernel f[h, 4h] in the cell's dtype."""
        return self.recurrent().astype(self.dtype)

    def recur(self, carry, input_gates: jax.Array):
        """One step from the input half of the gates f32[B, 4h]: ((c', h'), h')."""
        c, h = carry
        gates = input_gates + h.astype(self.dtype) @ self.recurrent_kernel()
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    def __call__(self, carry, inputs):
        return self.recur(carry, inputs if self.projected_inputs else self.project(inputs))

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
            outputs, final = self._direction(x, lengths, f"forward_{layer}", reverse=False)
            if self.bidirectional:
                back_outputs, back_final = self._direction(
                    x, lengths, f"backward_{layer}", reverse=True
                )
                outputs = jnp.concatenate([outputs, back_outputs], axis=-1)
                final = jnp.concatenate([final, back_final], axis=-1)
            x = outputs
        return x, final

    def _direction(self, x: jax.Array, lengths: jax.Array | None, name: str, reverse: bool):
        """One direction of one layer over x f32[B, T, x]: outputs f32[B, T, H] in the input's
        time order and the final hidden state f32[B, H]. An LSTM multiplies the whole
        sequence by its input kernel first (see `LSTMCell`); without padding it then runs
        `jaxdl.ops.lstm.lstm_sequence` (a scan with a hand-written backward pass)."""
        if self.kind != "lstm":
            cell = make_cell(self.kind, self.features, self.activation, self.dtype, name)
            inputs = x
        else:
            cell = LSTMCell(self.features, dtype=self.dtype, projected_inputs=True, name=name)
            inputs = cell.project(x)
            if lengths is None:
                zeros = jnp.zeros((x.shape[0], self.features), inputs.dtype)
                gates = inputs[:, ::-1] if reverse else inputs
                outputs, _, final = lstm_sequence(gates, cell.recurrent_kernel(), zeros, zeros)
                return (outputs[:, ::-1] if reverse else outputs), final
        scan = nn.RNN(cell, return_carry=True, reverse=reverse, keep_order=True)
        carry, outputs = scan(inputs, seq_lengths=lengths)
        return outputs, hidden_state(carry)

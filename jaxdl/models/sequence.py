"""Sequence models: recurrent and Transformer classifiers, character language models and an
encoder-decoder translator, all from `jaxdl.nn`'s recurrent and attention layers.

Inputs: the classifiers read f32[B, T, F] sequences, and images f32[B, H, W, C] as H steps of
W·C features (an MNIST digit row by row: 28 steps of 28 pixels). The language models read
token ids i32[B, T] and return next-token logits f32[B, T, vocab]; the translator reads the
source and the shifted target side by side, i32[B, S + T] (the first `source_length` columns
are the source), and returns logits f32[B, T, vocab] for the target. Token 0 is padding.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import register
from jaxdl.nn.attention import DecoderBlock, EncoderBlock, Positions, causal_mask, padding_mask
from jaxdl.nn.dropout import Dropout
from jaxdl.nn.recurrent import Recurrent

PAD = 0


def as_sequence(x: jax.Array) -> jax.Array:
    """f32[B, T, F] from images f32[B, H, W, C] (rows as steps) or sequences f32[B, T, F]."""
    if x.ndim == 4:
        return x.reshape(x.shape[0], x.shape[1], -1)
    if x.ndim == 3:
        return x
    raise ValueError(f"a sequence model takes f32[B, T, F] or images, got shape {x.shape}")


class RecurrentClassifier(nn.Module):
    """f32[B, T, F] (or images) -> f32[B, num_classes]: `num_layers` recurrent layers of `cell`
    ("rnn", "lstm", "gru"; the RNN's `activation` tanh or sigmoid), a linear classifier on
    the final hidden state."""

    num_classes: int
    cell: str = "lstm"
    hidden: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    activation: str = "tanh"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        sequence = as_sequence(x).astype(self.dtype)
        _, final = Recurrent(
            self.cell,
            self.hidden,
            self.num_layers,
            self.bidirectional,
            self.activation,
            self.dtype,
        )(sequence)
        return nn.Dense(self.num_classes, dtype=self.dtype)(final)


class TransformerClassifier(nn.Module):
    """f32[B, T, F] (or images) -> f32[B, num_classes]: each step projected to `dim`, positions
    added, `depth` pre-norm encoder blocks, a final LayerNorm, the mean over steps, a linear
    classifier."""

    num_classes: int
    dim: int = 64
    heads: int = 4
    depth: int = 2
    mlp_dim: int = 128
    positions: str = "learned"
    max_length: int = 64
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h = nn.Dense(self.dim, dtype=self.dtype)(as_sequence(x).astype(self.dtype))
        h = Positions(self.positions, self.max_length)(h)
        for _ in range(self.depth):
            h = EncoderBlock(
                self.heads, self.mlp_dim, self.dropout_rate, self.axis_name, self.dtype
            )(h, train=train)
        h = nn.LayerNorm(dtype=self.dtype)(h).mean(axis=1)
        return nn.Dense(self.num_classes, dtype=self.dtype)(h)


class CharLSTM(nn.Module):
    """Token ids i32[B, T] -> next-token logits f32[B, T, num_classes] (the vocabulary): an
    embedding, `num_layers` LSTM layers of `hidden` units (dropout between them and before
    the output layer), a linear output layer."""

    num_classes: int
    embed: int = 64
    hidden: int = 512
    num_layers: int = 2
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False) -> jax.Array:
        h = nn.Embed(self.num_classes, self.embed, dtype=self.dtype)(tokens)
        for layer in range(self.num_layers):
            h, _ = Recurrent("lstm", self.hidden, dtype=self.dtype, name=f"lstm_{layer}")(h)
            h = Dropout(self.dropout_rate, not train, self.axis_name)(h)
        return nn.Dense(self.num_classes, dtype=self.dtype)(h)


class CharTransformer(nn.Module):
    """Token ids i32[B, T] -> next-token logits f32[B, T, num_classes]: a decoder-only
    Transformer (GPT-style): embedding, positions, `depth` pre-norm blocks under a causal
    mask, a final LayerNorm, a linear output layer."""

    num_classes: int
    dim: int = 256
    heads: int = 8
    depth: int = 4
    mlp_dim: int = 1024
    positions: str = "learned"
    max_length: int = 256
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False) -> jax.Array:
        h = nn.Embed(self.num_classes, self.dim, dtype=self.dtype)(tokens)
        h = Positions(self.positions, self.max_length)(h)
        mask = causal_mask(tokens.shape[1])
        for _ in range(self.depth):
            h = EncoderBlock(
                self.heads, self.mlp_dim, self.dropout_rate, self.axis_name, self.dtype
            )(h, mask, train)
        h = nn.LayerNorm(dtype=self.dtype)(h)
        return nn.Dense(self.num_classes, dtype=self.dtype)(h)


class Seq2SeqTransformer(nn.Module):
    """Source and shifted target side by side, i32[B, source_length + T] -> target logits
    f32[B, T, num_classes]: a shared embedding for both sides (one vocabulary), an encoder of
    `encoder_depth` blocks over the source (padding masked), a decoder of `decoder_depth`
    blocks (causal self-attention, cross-attention to the encoder), a linear output layer."""

    num_classes: int
    source_length: int = 32
    dim: int = 128
    heads: int = 4
    encoder_depth: int = 2
    decoder_depth: int = 2
    mlp_dim: int = 256
    positions: str = "sinusoidal"
    max_length: int = 64
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = False) -> jax.Array:
        source, target = tokens[:, : self.source_length], tokens[:, self.source_length :]
        embed = nn.Embed(self.num_classes, self.dim, dtype=self.dtype)
        positions = Positions(self.positions, self.max_length)
        source_valid, target_valid = source != PAD, jnp.ones(target.shape, bool)
        memory = positions(embed(source))
        encoder_mask = padding_mask(source_valid, source_valid)
        for index in range(self.encoder_depth):
            memory = EncoderBlock(
                self.heads, self.mlp_dim, self.dropout_rate, self.axis_name, self.dtype,
                name=f"encoder_{index}",
            )(memory, encoder_mask, train)  # fmt: skip
        memory = nn.LayerNorm(dtype=self.dtype, name="encoder_norm")(memory)
        h = positions(embed(target))
        cross_mask = padding_mask(target_valid, source_valid)
        for index in range(self.decoder_depth):
            h = DecoderBlock(
                self.heads, self.mlp_dim, self.dropout_rate, self.axis_name, self.dtype,
                name=f"decoder_{index}",
            )(h, memory, causal_mask(target.shape[1]), cross_mask, train)  # fmt: skip
        h = nn.LayerNorm(dtype=self.dtype, name="decoder_norm")(h)
        return nn.Dense(self.num_classes, dtype=self.dtype)(h)


register("rnn_classifier", functools.partial(RecurrentClassifier, cell="rnn"))
register("lstm_classifier", functools.partial(RecurrentClassifier, cell="lstm"))
register("gru_classifier", functools.partial(RecurrentClassifier, cell="gru"))
register("transformer_classifier", TransformerClassifier)
register("char_lstm", CharLSTM)
register("char_transformer", CharTransformer)
register("seq2seq_transformer", Seq2SeqTransformer)

"""Attention and small Transformer blocks (Vaswani et al. 2017), pre-norm as in GPT-2 and ViT.

Attention itself is flax's `MultiHeadDotProductAttention` (parameters `query`, `key`, `value`
[D, heads, D / heads] and `out`, each with a bias). What is added here: positions (learned or
sinusoidal), the masks (causal, padding) and the blocks. Masks are boolean, True where a query
may look: [B or 1, 1, T_query, T_key], broadcast over heads.

Dropout is `jaxdl.nn.Dropout` on each residual branch (per-example masks, the same under every
device split); attention weights are not dropped, since flax's attention dropout draws masks
per device slice.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.errors import ConfigError
from jaxdl.nn.dropout import Dropout

POSITIONS = ("learned", "sinusoidal")


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """f32[length, dim]: sin on even, cos on odd features, wavelengths 2π to 10000·2π
    (Vaswani et al. 2017, section 3.5)."""
    position = np.arange(length)[:, None]
    rates = np.exp(-np.log(10000.0) * np.arange(0, dim, 2) / dim)
    table = np.zeros((length, dim), np.float32)
    table[:, 0::2] = np.sin(position * rates)
    table[:, 1::2] = np.cos(position * rates[: dim // 2])
    return table


def causal_mask(length: int) -> jax.Array:
    """bool[1, 1, T, T]: query i may look at keys 0..i only."""
    return jnp.tril(jnp.ones((length, length), bool))[None, None]


def padding_mask(query_valid: jax.Array, key_valid: jax.Array) -> jax.Array:
    """bool[B, 1, Tq, Tk] from bool[B, Tq] and bool[B, Tk]: real queries look at real keys."""
    return query_valid[:, None, :, None] & key_valid[:, None, None, :]


class Positions(nn.Module):
    """Adds position information to f32[B, T, D] (T <= `max_length`): a learned table
    [max_length, D] (`embedding`) or the fixed sinusoids."""

    kind: str = "learned"
    max_length: int = 512

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        length, dim = x.shape[-2:]
        if self.kind not in POSITIONS:
            raise ConfigError(
                f"unknown positions {self.kind!r}; choose one of {', '.join(POSITIONS)}."
            )
        if length > self.max_length:
            raise ConfigError(
                f"a sequence of {length} steps is longer than the model's max_length "
                f"{self.max_length}; raise max_length or cut the sequences."
            )
        if self.kind == "sinusoidal":
            return x + jnp.asarray(sinusoidal_positions(length, dim), x.dtype)
        table = self.param("embedding", nn.initializers.normal(0.02), (self.max_length, dim))
        return x + table[:length].astype(x.dtype)


class FeedForward(nn.Module):
    """f32[..., D] -> f32[..., D]: Dense(mlp_dim), GELU, Dense(D)."""

    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype)(x))
        return nn.Dense(x.shape[-1], dtype=self.dtype)(hidden)


class EncoderBlock(nn.Module):
    """Pre-norm Transformer block: x + attention(LN(x)) then x + feed-forward(LN(x)), on
    f32[B, T, D]; `mask` bool[B or 1, 1, T, T] (None: every step sees every step; a causal
    mask makes it a decoder-only language model's block)."""

    heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    axis_name: str | None = None  # the pmap axis, for dropout masks
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False):
        drop = lambda y: Dropout(self.dropout_rate, not train, self.axis_name)(y)
        y = nn.LayerNorm(dtype=self.dtype)(x)
        y = nn.MultiHeadDotProductAttention(self.heads, dtype=self.dtype)(y, y, mask=mask)
        x = x + drop(y)
        y = FeedForward(self.mlp_dim, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))
        return x + drop(y)


class DecoderBlock(nn.Module):
    """Pre-norm encoder-decoder block on f32[B, T, D]: causal self-attention (`self_mask`),
    cross-attention to the encoder's `memory` f32[B, S, D] (`cross_mask` bool[B, 1, T, S]),
    then the feed-forward, each a residual branch."""

    heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, memory, self_mask=None, cross_mask=None, train: bool = False):
        drop = lambda y: Dropout(self.dropout_rate, not train, self.axis_name)(y)
        y = nn.LayerNorm(dtype=self.dtype)(x)
        y = nn.MultiHeadDotProductAttention(self.heads, dtype=self.dtype, name="self_attention")(
            y, y, mask=self_mask
        )
        x = x + drop(y)
        y = nn.LayerNorm(dtype=self.dtype)(x)
        y = nn.MultiHeadDotProductAttention(self.heads, dtype=self.dtype, name="cross_attention")(
            y, memory, mask=cross_mask
        )
        x = x + drop(y)
        y = FeedForward(self.mlp_dim, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))
        return x + drop(y)

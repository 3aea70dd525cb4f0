"""Local response normalisation (Krizhevsky et al. 2012, section 3.3): each activation divided
by a power of the summed squares of its neighbours across channels, "a form of lateral
inhibition" between the feature maps at one position."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def local_response_norm(
    x: jax.Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75
) -> jax.Array:
    """f32[..., C] -> f32[..., C]: b_c = a_c / (k + alpha * sum of a_j^2 over the `size`
    channels j centred on c, clipped at the edges) ** beta. The defaults are the paper's
    (k = 2, n = 5, alpha = 1e-4, beta = 0.75); PyTorch's `LocalResponseNorm` divides alpha by
    `size`, so its alpha is the paper's times n."""
    squares = jnp.square(x.astype(jnp.float32))
    window = (1,) * (x.ndim - 1) + (size,)
    padding = ((0, 0),) * (x.ndim - 1) + ((size // 2, (size - 1) // 2),)
    sums = lax.reduce_window(squares, 0.0, lax.add, window, (1,) * x.ndim, padding)
    return (x / (k + alpha * sums) ** beta).astype(x.dtype)


class LocalResponseNorm(nn.Module):
    """`local_response_norm` as a layer (no parameters), so summaries list it."""

    size: int = 5
    k: float = 2.0
    alpha: float = 1e-4
    beta: float = 0.75

    def __call__(self, x: jax.Array) -> jax.Array:
        return local_response_norm(x, self.size, self.k, self.alpha, self.beta)

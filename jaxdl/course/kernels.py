"""The classic hand-made convolution kernels of the course, and what they do to a photograph.

Each kernel is 3x3 (the Gaussian 5x5) and is applied as every convolution in jaxdl is, a
cross-correlation (`jaxdl.nn.Conv` with the kernel as its weights), to a grey image with
zero padding, so the output keeps the image's size.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxdl.nn import Conv


def gaussian(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """A normalised 2-D Gaussian blur kernel f64[size, size]."""
    offsets = np.arange(size) - size // 2
    bump = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel = np.outer(bump, bump)
    return kernel / kernel.sum()


CLASSIC_KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], float),
    # output(r, c) = input(r, c - 1): the picture moves one pixel right
    "shift right": np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0]], float),
    "edges": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], float),
    "Laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float),
    "Gaussian blur": gaussian(),
    "Sobel x (vertical edges)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float),
    "Sobel y (horizontal edges)": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], float),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], float),
}


def apply_kernel(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """f32[H, W] response of a grey image f[H, W] to `kernel` f[k, k] (odd k), same size."""
    layer = Conv(1, kernel.shape[0], use_bias=False, layers="plain")
    weights = {"params": {"conv": {"kernel": jnp.asarray(kernel, jnp.float32)[..., None, None]}}}
    out = layer.apply(weights, jnp.asarray(image, jnp.float32)[None, ..., None])
    return np.asarray(out)[0, ..., 0]

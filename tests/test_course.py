"""The course's small worked examples, as tests: convolution and pooling as drawn on the
board, output-size arithmetic, local response normalisation, dilated convolutions on every
layer implementation and their receptive fields."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxdl.nn import Conv
from jaxdl.nn.conv import LAYER_IMPLS
from jaxdl.nn.lrn import local_response_norm
from jaxdl.nn.pool import avg_pool, max_pool
from jaxdl.tools.summary import summarize


def test_local_response_norm_equals_the_papers_formula():
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)).astype(np.float32) * 10
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    expected = np.empty_like(x)
    for c in range(7):
        low, high = max(0, c - n // 2), min(7, c + n // 2 + 1)
        expected[..., c] = x[..., c] / (k + alpha * (x[..., low:high] ** 2).sum(-1)) ** beta
    np.testing.assert_allclose(local_response_norm(jnp.asarray(x)), expected, rtol=1e-6)


def conv_with(kernel: np.ndarray, image: np.ndarray, layers: str, stride=1, padding=0, dilation=1):
    """jaxdl's Conv on one single-channel image with a fixed kernel, no bias."""
    layer = Conv(1, kernel.shape[0], stride, padding, use_bias=False, layers=layers,
                 dilation=dilation)  # fmt: skip
    params = {"params": {"conv": {"kernel": jnp.asarray(kernel, jnp.float32)[..., None, None]}}}
    return np.asarray(layer.apply(params, jnp.asarray(image, jnp.float32)[None, ..., None]))[
        0, ..., 0
    ]


@pytest.mark.parametrize("layers", ["plain", "auto"])
def test_the_boards_convolution(layers):
    image = np.array(
        [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
    )
    kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(
        conv_with(kernel, image, layers), [[4, 3, 4], [2, 4, 3], [2, 3, 4]]
    )


@pytest.mark.parametrize("layers", ["plain", "auto"])
def test_the_boards_pooling(layers):
    x = jnp.asarray(
        [[12, 20, 30, 0], [8, 12, 2, 0], [34, 70, 37, 4], [112, 100, 25, 12]], jnp.float32
    )[None, ..., None]
    np.testing.assert_array_equal(
        max_pool(x, 2, 2, layers=layers)[0, ..., 0], [[20, 30], [112, 37]]
    )
    np.testing.assert_array_equal(avg_pool(x, 2, 2)[0, ..., 0], [[13, 8], [79, 19.5]])


@pytest.mark.parametrize("size", [5, 7, 32])
@pytest.mark.parametrize(
    "kernel, padding, stride", [(1, 0, 1), (3, 1, 1), (3, 0, 2), (5, 2, 2), (7, 3, 4), (2, 0, 2)]
)
def test_output_size_is_floor_of_n_plus_2p_minus_f_over_s_plus_1(size, kernel, padding, stride):
    expected = (size + 2 * padding - kernel) // stride + 1
    image = np.zeros((size, size))
    assert (
        conv_with(np.ones((kernel, kernel)), image, "plain", stride, padding).shape
        == (expected,) * 2
    )
    x = jnp.zeros((1, size, size, 1))
    assert max_pool(x, kernel, stride, padding).shape[1:3] == (expected,) * 2


# ---- dilated convolutions --------------------------------------------------------------------


@pytest.mark.parametrize("layers", LAYER_IMPLS)
@pytest.mark.parametrize("dilation, stride", [(2, 1), (4, 1), (2, 2)])
def test_dilated_conv_equals_xla_in_values_and_gradients(layers, dilation, stride):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 17, 17, 4))
    layer = Conv(6, 3, stride, dilation=dilation, use_bias=False, layers=layers)
    params = layer.init(jax.random.PRNGKey(1), x)
    kernel = params["params"]["conv"]["kernel"]
    pad = dilation  # dilation x (3 // 2): the layer's default
    reference = lambda x, k: lax.conv_general_dilated(
        x, k, (stride, stride), ((pad, pad), (pad, pad)), rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )  # fmt: skip
    ours = lambda x, k: layer.apply({"params": {"conv": {"kernel": k}}}, x)
    y = ours(x, kernel)
    assert y.shape == (2, -(-17 // stride), -(-17 // stride), 6)
    scale = float(jnp.abs(reference(x, kernel)).max())
    np.testing.assert_allclose(y, reference(x, kernel), atol=1e-5 * scale)
    loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
    for got, want in zip(
        jax.grad(loss(ours), (0, 1))(x, kernel),
        jax.grad(loss(reference), (0, 1))(x, kernel),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.abs(want).max()))


class DilatedStack(nn.Module):
    dilations: tuple[int, ...]

    @nn.compact
    def __call__(self, x, train=False):
        for d in self.dilations:
            x = Conv(4, 3, dilation=d, layers="plain")(x)
        return x


@pytest.mark.parametrize("dilations, field", [((1,), 3), ((2,), 5), ((4,), 9), ((1, 2, 4), 15)])
def test_receptive_field_of_dilated_kernels(dilations, field):
    """A 3x3 kernel with dilation d spans 2d + 1 pixels; stacked, 1 + 2 + 4 + 8 = 15."""
    rows = summarize(DilatedStack(dilations), (1, 32, 32, 1))
    assert rows[-1].field.size == field
    assert rows[-1].output_shape == (1, 32, 32, 4)  # the default padding keeps the size


# ---- classic kernels ---------------------------------------------------------------------------


def test_classic_kernels_do_what_their_names_say():
    from jaxdl.course.kernels import CLASSIC_KERNELS, apply_kernel

    image = np.random.default_rng(0).uniform(0, 255, (12, 16))
    k = CLASSIC_KERNELS
    np.testing.assert_allclose(apply_kernel(image, k["identity"]), image, rtol=1e-6)
    shifted = apply_kernel(image, k["shift right"])
    np.testing.assert_allclose(shifted[:, 1:], image[:, :-1], rtol=1e-6)
    ramp = np.tile(np.arange(16.0), (12, 1)) * 3 + 7  # brighter to the right, linearly
    inside = (slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(apply_kernel(ramp, k["Laplacian"])[inside], 0, atol=1e-4)
    np.testing.assert_allclose(apply_kernel(ramp, k["edges"])[inside], 0, atol=1e-4)
    np.testing.assert_allclose(apply_kernel(ramp, k["Sobel x (vertical edges)"])[inside], 24)
    np.testing.assert_allclose(apply_kernel(ramp, k["Sobel y (horizontal edges)"])[inside], 0)
    flat = np.full((12, 16), 50.0)
    np.testing.assert_allclose(apply_kernel(flat, k["Gaussian blur"])[inside], 50, rtol=1e-6)
    np.testing.assert_allclose(apply_kernel(flat, k["sharpen"])[inside], 50, rtol=1e-6)

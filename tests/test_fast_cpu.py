"""The XLA:CPU layers (jaxdl.ops.fast_cpu) equal the plain ones in values and gradients."""

from __future__ import annotations

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.nn.conv import BatchNorm, Conv, ConvBN, check_layer_impl, use_fast_path
from jaxdl.nn.pool import max_pool
from jaxdl.ops import fast_cpu, onednn
from jaxdl.state import create_train_state
from jaxdl.step import train_step


def reference_batch_norm(x, scale, bias, epsilon=1e-5):
    """Textbook BatchNorm in float64 (two-pass variance)."""
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    return (x - mean) / jnp.sqrt(var + epsilon) * scale + bias, mean, var


# Row counts that fold k = 1 (odd), 2, 8 and up to SUM_ROW_WIDTH rows side by side in the
# channel sums; post-ReLU inputs with a mean as large as their spread, as BatchNorm sees inside
# a network.
@pytest.mark.parametrize(
    "shape",
    [(16, 8, 8, 16), (8, 4, 4, 64), (8, 4, 4, 96), (4, 2, 2, 256), (3, 5, 5, 10), (2, 1, 1, 7)],
)
def test_batch_norm_matches_float64_reference(shape):
    kx, kg, ks = jax.random.split(jax.random.PRNGKey(0), 3)
    with jax.enable_x64(True):
        x = jax.nn.relu(jax.random.normal(kx, shape, jnp.float64)) + 0.5
        dy = jax.random.normal(kg, shape, jnp.float64)
        scale = 1.0 + 0.5 * jax.random.normal(ks, shape[-1:], jnp.float64)
        bias = jnp.linspace(-1.0, 1.0, shape[-1])
        ref_out, ref_vjp = jax.vjp(reference_batch_norm, x, scale, bias)
        ref_grads = ref_vjp((dy, jnp.zeros_like(scale), jnp.zeros_like(scale)))
        ref = [np.asarray(a) for a in (*ref_out, *ref_grads)]
    f32 = lambda a: np.asarray(a, np.float32)
    out, vjp = jax.vjp(
        lambda *a: fast_cpu.batch_norm_train(*a, 1e-5), f32(x), f32(scale), f32(bias)
    )
    zeros = jnp.zeros(shape[-1:])
    grads = vjp((f32(dy), zeros, zeros))
    for got, want in zip((*out, *grads), ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_rows_per_fold_is_the_largest_power_of_two_that_divides_and_fits():
    assert fast_cpu.rows_per_fold(128 * 32 * 32, 16) == 1024  # 1024 x 16 = SUM_ROW_WIDTH
    assert fast_cpu.rows_per_fold(128 * 8 * 8, 64) == 256
    assert fast_cpu.rows_per_fold(75, 10) == 1  # odd: nothing divides
    assert fast_cpu.rows_per_fold(24, 10) == 8  # 16 does not divide 24
    assert fast_cpu.rows_per_fold(64, 20_000) == 1  # one row is already wider than the limit


@pytest.mark.parametrize(
    "strides, padding, groups, dilation",
    [
        (1, ((1, 1), (1, 1)), 1, 1),
        (2, ((1, 1), (1, 1)), 1, 1),
        (1, "SAME", 4, 1),
        (1, "VALID", 1, 2),
    ],
)
def test_conv_equals_lax_conv_with_gradients(strides, padding, groups, dilation):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(1), 3)
    x = jax.random.normal(kx, (4, 9, 9, 8))
    w = jax.random.normal(kw, (3, 3, 8 // groups, 8))
    args = dict(
        window_strides=(strides, strides),
        padding=padding,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )
    plain = functools.partial(lax.conv_general_dilated, **args)
    fast = functools.partial(fast_cpu.conv_general_dilated, **args)
    out, plain_vjp = jax.vjp(plain, x, w)
    fast_out, fast_vjp = jax.jit(lambda x, w: jax.vjp(fast, x, w))(x, w)
    dy = jax.random.normal(kg, out.shape)
    chex.assert_trees_all_close(fast_out, out, atol=1e-6)
    chex.assert_trees_all_close(fast_vjp(dy), plain_vjp(dy), atol=1e-5, rtol=1e-6)


def test_opaque_is_the_identity_under_jit_and_grad():
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(jax.jit(fast_cpu.opaque)(x), x)
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(fast_cpu.opaque(v) ** 2))(x), 2 * x)


class TinyConvNet(nn.Module):
    """ConvBN at 32 and 96 channels (both BatchNorm summing paths), a stride-2 conv, a head."""

    layers: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = ConvBN(32, layers=self.layers)(x, train)
        x = ConvBN(96, strides=2, layers=self.layers)(x, train)
        x = Conv(16, 1, layers=self.layers)(x)
        x = nn.relu(BatchNorm(layers=self.layers)(x, train))
        return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


def tiny_batch():
    kx, ky = jax.random.split(jax.random.PRNGKey(2))
    return {
        "image": jax.random.normal(kx, (64, 16, 16, 3)),
        "label": jax.random.randint(ky, (64,), 0, 10, dtype=jnp.int32),
    }


def one_step(model, impl, batch):
    """(params before, state after one step, metrics, eval logits after) with layers `impl`."""
    tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
    model = model.clone(layers=impl)
    state = create_train_state(model, tx, jax.random.PRNGKey(0), (1, *batch["image"].shape[1:]))
    step = jax.jit(functools.partial(train_step, l2_weight=5e-4))
    new_state, metrics = step(state, batch)
    logits = jax.jit(
        lambda s: s.apply_fn(
            {"params": s.params, "batch_stats": s.batch_stats}, batch["image"], train=False
        )
    )(new_state)
    return state.params, new_state, metrics, logits


def update_error(state, start, reference):
    """Largest |update - reference update| over all parameters, over the largest update."""
    update = lambda s: jax.tree.map(lambda a, b: np.asarray(a, np.float64) - b, s.params, start)
    got, want = jax.tree.leaves(update(state)), jax.tree.leaves(update(reference))
    scale = max(np.abs(w).max() for w in want)
    return max(np.abs(g - w).max() for g, w in zip(got, want, strict=True)) / scale


@pytest.mark.parametrize("model_name", ["tiny", "resnet20"])
@pytest.mark.slow
def test_train_step_fast_equals_plain(model_name):
    """Same variables (checkpoints move between the two), same step within float32 rounding.

    The parameter updates agree to 1e-2 of the largest one: float32 sums in another order, and
    a float32 ResNet-20 step is itself ~1.7e-4 (absolute) from the exact one on CPU
    (tests/test_parallel.py); fast and plain differ here by ~3e-4 (4e-3 relative)."""
    model = TinyConvNet() if model_name == "tiny" else models.create("resnet20", num_classes=10)
    batch = tiny_batch()
    start, plain, plain_metrics, plain_logits = one_step(model, "plain", batch)
    _, fast, fast_metrics, fast_logits = one_step(model, "fast", batch)
    chex.assert_trees_all_equal_structs(plain.params, fast.params)
    chex.assert_trees_all_equal_structs(plain.batch_stats, fast.batch_stats)
    assert update_error(fast, start, plain) < 1e-2
    chex.assert_trees_all_close(fast.batch_stats, plain.batch_stats, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(fast_metrics["loss"], plain_metrics["loss"], rtol=1e-6)
    # Logits after the step carry the update's difference (ResNet-20: 4.3e-3 at logits ~2).
    np.testing.assert_allclose(fast_logits, plain_logits, atol=1e-2, rtol=0)


def test_auto_chooses_fast_for_float32_on_cpu_without_cross_device_stats():
    assert jax.default_backend() == "cpu"
    assert use_fast_path("auto", jnp.float32)
    # bfloat16 only beside oneDNN's bfloat16 convolutions, on CPUs with bfloat16 instructions
    assert use_fast_path("auto", jnp.bfloat16) == onednn.native_bfloat16()
    assert not use_fast_path("auto", jnp.float32, cross_device=True)
    assert not use_fast_path("plain", jnp.float32)
    assert use_fast_path("fast", jnp.bfloat16)


def test_unknown_layer_impl_is_one_sentence():
    with pytest.raises(ConfigError, match="unknown layer implementation 'quick'; choose one of"):
        check_layer_impl("quick")


@pytest.mark.parametrize(
    "window, stride, padding, ceil_mode, size",
    [(2, 2, 0, False, 8), (2, 2, 0, False, 7), (3, 2, 1, False, 8), (3, 2, 0, True, 9),
     (3, 3, 0, False, 7), (3, 1, 1, False, 5)],
)  # fmt: skip
def test_max_pool_by_slices_equals_reduce_window(window, stride, padding, ceil_mode, size):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))  # no ties: gradients agree
    weights = jax.random.normal(
        jax.random.PRNGKey(1), max_pool(x, window, stride, padding, ceil_mode).shape
    )

    def run(impl):
        f = lambda x: jnp.sum(max_pool(x, window, stride, padding, ceil_mode, impl) * weights)
        return jax.jit(f)(x), jax.jit(jax.grad(f))(x)

    (value, grad), (plain_value, plain_grad) = run("fast"), run("plain")
    np.testing.assert_allclose(value, plain_value, rtol=1e-6)
    np.testing.assert_allclose(grad, plain_grad, atol=1e-6)


@pytest.mark.parametrize("size, padding", [(2, "SAME"), (1, "SAME"), (2, ((1, 1), (1, 1)))])
def test_conv_on_maps_smaller_than_the_kernel_equals_lax_conv(size, padding):
    # on 2x2 and 1x1 maps the fast path computes the 3x3 convolution as one dot
    x = jax.random.normal(jax.random.PRNGKey(0), (4, size, size, 8))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 8, 16))
    dims = ("NHWC", "HWIO", "NHWC")
    plain = lambda x, k: lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=dims)
    fast = lambda x, k: fast_cpu.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=dims)
    np.testing.assert_allclose(jax.jit(fast)(x, k), plain(x, k), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
    for got, want in zip(
        jax.grad(loss(fast), (0, 1))(x, k), jax.grad(loss(plain), (0, 1))(x, k), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_tiled_max_pool_gradient_goes_to_the_first_maximum_of_each_tile():
    x = jnp.array([[1.0, 3.0, 2.0, 2.0, 7.0], [3.0, 0.0, 2.0, 2.0, 7.0], [7.0] * 5])
    x = x[None, :, :, None]  # 3 x 5: the last row and column fall outside every 2 x 2 tile
    value, grad = jax.value_and_grad(lambda x: jnp.sum(max_pool(x, 2, 2, layers="fast")))(x)
    assert value == 5.0
    expected = np.zeros((3, 5))
    expected[0, 1] = expected[0, 2] = 1.0  # ties: the first in row-major order takes it all
    np.testing.assert_array_equal(grad[0, :, :, 0], expected)


def test_airbench_gradients_are_finite_at_every_xla_optimisation_level():
    # This module runs at --xla_backend_optimization_level=0 (conftest), where XLA computed the
    # GELU before each max-pool twice with different rounding: JAX's max gradient divided by a
    # count of 0 and every gradient below the pool was NaN. The fast path's pool compares nothing.
    model = models.create("airbench94", widths=(16,), layers="fast")
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(0), x)

    def loss(params):
        out, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x, train=True, mutable=["batch_stats"],
        )  # fmt: skip
        return jnp.sum(jnp.sin(100 * out))

    grads = jax.jit(jax.grad(loss))(variables["params"])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_conv_as_block_diagonal_equals_lax_grouped_conv(groups):
    # the fast path runs grouped convolutions as one convolution with a block-diagonal kernel
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 8))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 8 // groups, 12))
    w = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 6, 12))
    dims = ("NHWC", "HWIO", "NHWC")

    def loss(conv, x, k):
        out = conv(x, k, (1, 1), "SAME", dimension_numbers=dims, feature_group_count=groups)
        return jnp.sum(out * w)

    plain = jax.value_and_grad(functools.partial(loss, lax.conv_general_dilated), argnums=(0, 1))
    fast = jax.value_and_grad(functools.partial(loss, fast_cpu.conv_general_dilated), (0, 1))
    (value, grads), (fast_value, fast_grads) = plain(x, k), jax.jit(fast)(x, k)
    np.testing.assert_allclose(fast_value, value, rtol=1e-5)
    for got, want in zip(fast_grads, grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert fast_cpu.block_diagonal_kernel(k, groups).shape == (3, 3, 8, 12)


def test_batch_norm_in_bfloat16_normalises_in_float32_and_keeps_the_dtype():
    rng = np.random.default_rng(0)
    x = jnp.asarray(3.0 + 2.0 * rng.standard_normal((4, 6, 6, 8)), jnp.bfloat16)
    scale, bias = jnp.linspace(0.5, 1.5, 8), jnp.linspace(-1.0, 1.0, 8)
    dy = jnp.asarray(rng.standard_normal(x.shape), jnp.bfloat16)
    (y, mean, var), vjp = jax.vjp(lambda *a: fast_cpu.batch_norm_train(*a, 1e-5), x, scale, bias)
    (want, want_mean, want_var), want_vjp = jax.vjp(
        lambda *a: fast_cpu.batch_norm_train(*a, 1e-5), x.astype(jnp.float32), scale, bias
    )
    assert y.dtype == jnp.bfloat16 and mean.dtype == var.dtype == jnp.float32
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)  # the statistics of the same values
    np.testing.assert_allclose(var, want_var, rtol=1e-5)
    # the output rounded once to bfloat16 (8 significant bits)
    np.testing.assert_allclose(y.astype(jnp.float32), want, rtol=2**-8, atol=2**-8)
    dx, dscale, dbias = vjp((dy, jnp.zeros(8), jnp.zeros(8)))
    want_dx, want_dscale, want_dbias = want_vjp(
        (dy.astype(jnp.float32), jnp.zeros(8), jnp.zeros(8))
    )
    assert dx.dtype == jnp.bfloat16 and dscale.dtype == jnp.float32
    np.testing.assert_allclose(dx.astype(jnp.float32), want_dx, rtol=2**-7, atol=2**-7)
    np.testing.assert_allclose(dscale, want_dscale, rtol=1e-5)
    np.testing.assert_allclose(dbias, want_dbias, rtol=1e-5)

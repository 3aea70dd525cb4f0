"""The fused BatchNorm kernels (jaxdl.ops.onednn.batch_norm) equal BatchNorm, residual add and
ReLU in float64 and on the XLA path in value, gradients and running averages, under jit, grad
and vmap; and
jaxdl's allocator setting (jaxdl.host_memory) removes XLA:CPU's per-step page faults."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxdl.nn.conv import BatchNorm, ConvBN, fused_batch_norm
from jaxdl.ops import fast_cpu, onednn
from jaxdl.ops.onednn import batch_norm

AVAILABLE = onednn.status().available
needs_onednn = pytest.mark.skipif(not AVAILABLE, reason=f"oneDNN: {onednn.status().reason}")
EPS = 1e-5


def reference(x, scale, bias, residual, epsilon, relu):
    """fast_cpu's BatchNorm, then the add and ReLU as XLA ops."""
    y, mean, var = fast_cpu.batch_norm_train(x, scale, bias, epsilon)
    y = y if residual is None else y + residual
    return (jax.nn.relu(y) if relu else y), mean, var


def exact(x, scale, bias, residual, epsilon, relu):
    """The same in float64 (two-pass variance), run under `enable_x64`: the ground truth. In
    float32 both implementations lose digits when a channel's mean dwarfs its spread."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.mean(jnp.square(x - mean), axes)
    y = scale * (x - mean) / jnp.sqrt(var + epsilon) + bias
    y = y if residual is None else y + residual
    return (jax.nn.relu(y) if relu else y), mean, var


def in_float64(f, *args):
    """f(*args) with every array argument in float64; results back in float32."""
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), args)
        return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), f(*wide))


def arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape) * 3 + 1.5, jnp.float32)  # mean far from 0
    residual = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    scale = jnp.asarray(rng.standard_normal(shape[-1]), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(shape[-1]), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    return x, residual, scale, bias, cotangent


def relative_error(got, want) -> float:
    return float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))


SHAPES = [(4, 8, 8, 16), (3, 5, 7, 3), (1, 3, 1, 5), (16, 33), (130, 64)]


@needs_onednn
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_value_and_gradients_equal_float64_and_the_xla_path(shape, with_residual, relu):
    x, residual, scale, bias, cotangent = arrays(shape)
    residual = residual if with_residual else None
    ours = lambda *a: batch_norm.batch_norm_train(*a, EPS, relu)
    got, got_vjp = jax.jit(lambda *a: jax.vjp(ours, *a))(x, scale, bias, residual)
    zeros = jnp.zeros(shape[-1])
    grads = got_vjp((cotangent, zeros, zeros))
    assert (grads[3] is None) == (residual is None)

    def exact_value_and_grads(x, scale, bias, residual, cotangent):
        want, vjp = jax.vjp(lambda *a: exact(*a, EPS, relu), x, scale, bias, residual)
        zeros = jnp.zeros_like(scale)
        return want, vjp((cotangent, zeros, zeros))

    want, expected = in_float64(exact_value_and_grads, x, scale, bias, residual, cotangent)
    for g, w in zip(got, want, strict=True):  # y, mean, var
        assert g.shape == w.shape and relative_error(g, w) <= 1e-5
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        assert relative_error(g, w) <= 1e-5
    # and the XLA path's float32 BatchNorm, within its own rounding
    xla, xla_vjp = jax.vjp(lambda *a: reference(*a, EPS, relu), x, scale, bias, residual)
    assert relative_error(got[0], xla[0]) <= 1e-4
    xla_grads = jax.tree.leaves(xla_vjp((cotangent, zeros, zeros)))
    for g, w in zip(jax.tree.leaves(grads), xla_grads, strict=True):
        assert relative_error(g, w) <= 1e-4


@needs_onednn
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
def test_bfloat16_is_the_float32_kernel_on_the_same_values_rounded_once(with_residual, relu):
    x, residual, scale, bias, cotangent = arrays((4, 6, 6, 32))
    x, residual, cotangent = (a.astype(jnp.bfloat16) for a in (x, residual, cotangent))
    residual = residual if with_residual else None
    wide = lambda a: None if a is None else a.astype(jnp.float32)
    run = lambda *a: jax.vjp(lambda *b: batch_norm.batch_norm_train(*b, EPS, relu), *a)
    (y, mean, var), vjp = jax.jit(run)(x, scale, bias, residual)
    (want_y, want_mean, want_var), want_vjp = jax.jit(run)(wide(x), scale, bias, wide(residual))
    zeros = jnp.zeros(x.shape[-1])
    grads = vjp((cotangent, zeros, zeros))
    want_grads = want_vjp((wide(cotangent), zeros, zeros))
    # widening is exact and the arithmetic is float32's: the same statistics bit for bit, and
    # every activation and activation gradient the float32 result rounded to bfloat16
    assert y.dtype == jnp.bfloat16 and mean.dtype == var.dtype == jnp.float32
    np.testing.assert_array_equal(mean, want_mean)
    np.testing.assert_array_equal(var, want_var)
    np.testing.assert_array_equal(y, want_y.astype(jnp.bfloat16))
    for got, want in zip(grads, want_grads, strict=True):
        if got is None:
            continue
        assert got.dtype == (jnp.float32 if got.ndim == 1 else jnp.bfloat16)
        np.testing.assert_array_equal(got, want.astype(got.dtype))


@needs_onednn
def test_mixed_float32_and_bfloat16_activations_are_refused():
    x, residual, scale, bias, _ = arrays((2, 4, 4, 8))
    with pytest.raises(Exception, match="must all be float32 or all bfloat16"):
        jax.block_until_ready(
            batch_norm.forward(x, scale, bias, residual.astype(jnp.bfloat16), EPS, True)
        )


@needs_onednn
def test_the_relu_mask_recomputed_from_x_is_the_forwards_own():
    """Without a residual the backward masks dy by x * a + b > 0 rather than reading y > 0. It
    must be the forward's mask bit for bit: the gradients equal, exactly, those of the add
    kernel (which reads y) with a zero residual. Half the channels sit on the ReLU's edge (x a
    hair from its mean, bias 0: every pre-activation is rounding noise), where any difference
    in the arithmetic would flip entries of the mask."""
    x, _, scale, bias, cotangent = arrays((4, 9, 9, 8), seed=4)
    rng = np.random.default_rng(5)
    edge = jnp.asarray(3.0 + 1e-6 * rng.standard_normal((4, 9, 9, 4)), jnp.float32)
    x = x.at[..., :4].set(edge)
    bias = bias.at[:4].set(0.0)
    zero = jnp.zeros_like(x)
    y, mean, var = batch_norm.forward(x, scale, bias, None, EPS, relu=True)
    y_add, mean_add, var_add = batch_norm.forward(x, scale, bias, zero, EPS, relu=True)
    for a, b in ((y, y_add), (mean, mean_add), (var, var_add)):
        np.testing.assert_array_equal(a, b)
    active = np.asarray(y[..., :4] > 0).mean()
    assert 0.2 < active < 0.8, f"the edge channels should be mixed, got {active:.2f} active"
    from_x = batch_norm.backward(cotangent, x, scale, mean, var, EPS, True, False, bias=bias)
    from_y = batch_norm.backward(cotangent, x, scale, mean, var, EPS, True, True, y=y)
    for a, b in zip(from_x, from_y[:3], strict=True):  # dx, dscale, dbias
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(from_y[3], jnp.where(y > 0, cotangent, 0.0))


@needs_onednn
def test_statistics_are_the_batch_mean_and_biased_variance():
    x, *_ = arrays((6, 5, 5, 8), seed=3)
    ones, zeros = jnp.ones(8), jnp.zeros(8)
    y, mean, var = batch_norm.batch_norm_train(x, ones, zeros, None, EPS, False)
    flat = np.asarray(x, np.float64).reshape(-1, 8)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-6)
    np.testing.assert_allclose(var, flat.var(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 8).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 8).std(0), 1.0, rtol=1e-4)


@needs_onednn
def test_gradients_match_finite_differences():
    # without the ReLU: a finite difference across its kink measures nothing
    x, residual, scale, bias, _ = arrays((2, 3, 3, 4), seed=1)
    f = lambda x, scale, bias, residual: jnp.sum(
        jnp.sin(batch_norm.batch_norm_train(x, scale, bias, residual, EPS, False)[0])
    )
    check_grads(f, (x, scale, bias, residual), order=1, modes=("rev",), atol=1e-2, rtol=1e-2,
                eps=1e-3)  # fmt: skip


class BatchNormModuleTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_fused_module_equals_the_fast_one_with_running_averages(self):
        if not AVAILABLE:
            self.skipTest(onednn.status().reason)
        x, residual, *_ = arrays((4, 6, 6, 8), seed=2)
        results = {}
        for layers in ("onednn", "fast"):
            module = BatchNorm(layers=layers)
            variables = module.init(jax.random.key(0), x, train=True)
            apply = lambda v, x, r, module=module: module.apply(
                v, x, True, r, True, mutable=["batch_stats"]
            )
            results[layers] = self.variant(apply)(variables, x, residual)
        chex.assert_trees_all_close(results["onednn"], results["fast"], rtol=1e-5, atol=1e-5)
        assert fused_batch_norm("onednn", jnp.float32) and not fused_batch_norm("fast", jnp.float32)
        text = jax.jit(
            lambda x: BatchNorm(layers="onednn").init_with_output(jax.random.key(0), x, True)
        ).lower(x).as_text()  # fmt: skip
        assert "jaxdl_batch_norm_forward" in text


@needs_onednn
def test_conv_bn_with_a_shortcut_equals_the_plain_layers():
    x, *_ = arrays((2, 8, 8, 4), seed=4)
    shortcut = jnp.asarray(np.random.default_rng(5).standard_normal((2, 8, 8, 6)), jnp.float32)
    outputs = {}
    for layers in ("onednn", "plain"):
        module = ConvBN(6, layers=layers)
        variables = module.init(jax.random.key(0), x, True, shortcut)

        def loss(params, module=module, variables=variables):
            out, _ = module.apply({**variables, "params": params}, x, True, shortcut,
                                  mutable=["batch_stats"])  # fmt: skip
            return jnp.sum(jnp.sin(out)), out

        (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
        outputs[layers] = (out, grads)
    assert float(jnp.min(outputs["plain"][0])) == 0.0  # the ReLU is applied after the add
    chex.assert_trees_all_close(outputs["onednn"], outputs["plain"], rtol=1e-4, atol=1e-5)


@needs_onednn
def test_vmap_maps_over_an_extra_axis():
    x, residual, scale, bias, _ = arrays((3, 4, 4, 5), seed=6)
    xs, residuals = jnp.stack([x, 2 * x - 1]), jnp.stack([residual, -residual])
    ours = jax.vmap(lambda x, r: batch_norm.batch_norm_train(x, scale, bias, r, EPS, True)[0])
    theirs = jax.vmap(lambda x, r: reference(x, scale, bias, r, EPS, True)[0])
    assert relative_error(jax.jit(ours)(xs, residuals), theirs(xs, residuals)) <= 1e-5
    loss = lambda f: lambda xs: jnp.sum(jnp.sin(f(xs, residuals)))
    assert relative_error(jax.grad(loss(ours))(xs), jax.grad(loss(theirs))(xs)) <= 1e-5


FAULTS_SCRIPT = textwrap.dedent(
    """
    import resource
    import jaxdl, jax, jax.numpy as jnp

    # 128 MB of temporaries (sin x and cos x, the dots' operands): more than a worker
    # thread's glibc arena holds
    f = jax.jit(lambda x: (jnp.sin(x) @ jnp.cos(x)[:, :8]).sum()
                + (jnp.cos(x) @ jnp.sin(x)[:, :8]).sum())
    x = jnp.linspace(0.0, 1.0, 2**24).reshape(4096, 4096)
    compiled = f.lower(x).compile()
    temporaries = compiled.memory_analysis().temp_size_in_bytes
    # The heap grows over the first runs (a run's block is freed after the next one starts:
    # glibc needs a few blocks in turn, 4-6 of them, taken within 25 runs here)
    for _ in range(30):
        jax.block_until_ready(compiled(x))
    faults = []
    for _ in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        jax.block_until_ready(compiled(x))
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print("pages", temporaries // 4096, "faults", sorted(faults)[len(faults) // 2])
    """
)


def minor_faults_per_run(keep: str) -> tuple[int, float]:
    env = dict(os.environ, JAXDL_KEEP_HOST_MEMORY=keep)
    done = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    _, pages, _, faults = done.stdout.split()
    return int(pages), float(faults)


@pytest.mark.skipif(
    sys.platform != "linux" or os.uname().machine != "x86_64", reason="glibc on Linux x86-64"
)
def test_repeated_steps_reuse_their_host_memory():
    pages, faults = minor_faults_per_run("1")
    assert pages > 16_384, pages  # the program's temporaries span more than 64 MB
    assert faults < 0.05 * pages, (pages, faults)  # the median run's
    # without the setting, each run faults its temporaries in again: the test can fail
    pages, faults = minor_faults_per_run("0")
    assert faults > 0.9 * pages, (pages, faults)


def test_the_heap_is_never_trimmed_unless_a_threshold_is_given(monkeypatch):
    from jaxdl import host_memory

    monkeypatch.delenv("JAXDL_HEAP_TRIM_BYTES", raising=False)
    assert host_memory.trim_threshold() == host_memory.NEVER == -1
    monkeypatch.setenv("JAXDL_HEAP_TRIM_BYTES", "1048576")
    assert host_memory.trim_threshold() == 1_048_576
    monkeypatch.setenv("JAXDL_HEAP_TRIM_BYTES", str(2**40))  # mallopt takes an int
    assert host_memory.trim_threshold() == 2**31 - 1
    monkeypatch.setenv("JAXDL_HEAP_TRIM_BYTES", "2GiB")
    with pytest.raises(ValueError, match="JAXDL_HEAP_TRIM_BYTES is '2GiB'; give a number"):
        host_memory.trim_threshold()

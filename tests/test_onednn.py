"""The oneDNN convolutions (jaxdl.ops.onednn) equal XLA's in every pass, under jit, grad, vmap
and pmap; the library is in use where it is expected; without it jaxdl runs on XLA alike."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from jax.test_util import check_grads

from jaxdl import models, parallel
from jaxdl.nn.conv import Conv, conv_function, fold_batch_norm, fused_batch_norm
from jaxdl.ops import fast_cpu, onednn
from jaxdl.ops.onednn import build, tuning
from jaxdl.state import create_train_state
from jaxdl.step import classification

AVAILABLE = onednn.status().available
needs_onednn = pytest.mark.skipif(not AVAILABLE, reason=f"oneDNN: {onednn.status().reason}")
DIMS = ("NHWC", "HWIO", "NHWC")


def expected_here() -> bool:
    """Whether this machine should run on oneDNN: Linux x86-64 with the wheel installed."""
    if not build.supported_platform() or os.environ.get("JAXDL_ONEDNN") == "0":
        return False
    try:
        build.onednn_prefix()
    except build.BuildError:
        return False
    return True


def test_onednn_is_in_use_wherever_it_is_expected():
    status = onednn.status()
    if expected_here():
        assert status.available, status.line()
        assert status.version.startswith("3.") and status.isa not in ("", "default")
        assert conv_function("auto", jnp.float32) is tuning.conv_general_dilated
        assert fused_batch_norm("auto", jnp.float32) and fused_batch_norm("onednn", jnp.float32)
    else:
        assert conv_function("auto", jnp.float32) is fast_cpu.conv_general_dilated
        assert not fused_batch_norm("auto", jnp.float32)


# (batch, height, width, channels, kernel, features, strides, padding, dilation, groups): a
# sample of the grid that touches every option at least once.
CASES = [
    (2, 8, 8, 4, 3, 6, 1, "SAME", 1, 1),
    (1, 9, 7, 3, 3, 5, 2, "SAME", 1, 1),  # odd sizes, SAME at stride 2 pads (0, 1)
    (2, 11, 11, 4, 1, 8, 2, "VALID", 1, 1),
    (2, 16, 16, 8, 1, 16, 1, "VALID", 1, 1),
    (1, 13, 13, 3, 5, 4, 1, ((2, 1), (0, 2)), 1, 1),  # asymmetric
    (2, 15, 15, 3, 7, 8, 2, ((3, 3), (3, 3)), 1, 1),  # ResNet-18's ImageNet stem
    (2, 35, 35, 3, 11, 8, 4, ((2, 2), (2, 2)), 1, 1),  # AlexNet's stem
    (2, 9, 9, 4, 3, 6, 1, "SAME", 2, 1),
    (1, 12, 10, 4, 3, 4, 2, "VALID", 2, 1),
    (2, 8, 8, 4, 3, 6, 1, "SAME", 1, 2),
    (2, 7, 7, 8, 3, 8, 1, "SAME", 1, 8),  # depthwise
    (1, 6, 6, 8, 3, 16, 2, ((1, 1), (1, 1)), 1, 4),  # ResNeXt-like, strided
    (1, 5, 5, 6, 5, 4, 4, "SAME", 1, 2),
    (3, 2, 2, 8, 3, 8, 1, "SAME", 1, 1),  # a map smaller than the kernel
]


def case_arrays(case, seed=0):
    n, h, w, c, k, f, _, _, _, groups = case
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((n, h, w, c)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, c // groups, f)), jnp.float32)
    return x, kernel


def conv_call(function, case):
    *_, stride, padding, dilation, groups = case
    return lambda x, k: function(
        x, k, (stride, stride), padding, rhs_dilation=(dilation, dilation),
        dimension_numbers=DIMS, feature_group_count=groups,
    )  # fmt: skip


def relative_error(got, want) -> float:
    return float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))


@needs_onednn
@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_pass_equals_lax_conv(case):
    x, kernel = case_arrays(case)
    reference = conv_call(lax.conv_general_dilated, case)
    ours = conv_call(onednn.conv_general_dilated, case)
    want, want_vjp = jax.vjp(reference, x, kernel)
    got, got_vjp = jax.jit(lambda x, k: jax.vjp(ours, x, k))(x, kernel)
    dy = jnp.asarray(np.random.default_rng(1).standard_normal(want.shape), jnp.float32)
    tolerance = 1e-5 if kernel.shape[0] <= 3 else 1e-4
    assert got.shape == want.shape
    assert relative_error(got, want) <= tolerance
    for got_grad, want_grad in zip(got_vjp(dy), want_vjp(dy), strict=True):
        assert relative_error(got_grad, want_grad) <= tolerance
    assert "jaxdl_conv_forward" in jax.jit(ours).lower(x, kernel).as_text()


def gemm_weight_gradient(case, dy_seed=1):
    """(the gemm kernel's weight gradient under jit, lax's) of `case` for a random cotangent."""
    x, kernel = case_arrays(case)
    spec = onednn.conv_spec(x, kernel, (case[6],) * 2, case[7], None, (case[8],) * 2, DIMS,
                            1, 1, None, None)  # fmt: skip
    want_out, want_vjp = jax.vjp(lambda k: conv_call(lax.conv_general_dilated, case)(x, k), kernel)
    dy = jnp.asarray(np.random.default_rng(dy_seed).standard_normal(want_out.shape), jnp.float32)
    got = jax.jit(lambda x, dy: onednn.backward_weights_gemm(x, dy, kernel.shape, spec))(x, dy)
    return got, want_vjp(dy)[0]


@needs_onednn
@pytest.mark.parametrize("case", [c for c in CASES if c[-1] == 1], ids=str)
def test_gemm_weight_gradient_equals_lax_conv(case):
    got, want = gemm_weight_gradient(case)
    tolerance = 1e-5 if case[4] <= 3 else 1e-4
    assert relative_error(got, want) <= tolerance


@needs_onednn
def test_gemm_weight_gradient_reuses_its_buffers_cleanly():
    """The per-thread buffers outlive a call: a one-row product (the first thread has no rows
    and must zero the result) after a larger one, and the larger one again, bit for bit."""
    large, single = (2, 9, 9, 4, 3, 6, 1, "SAME", 1, 1), (1, 3, 3, 4, 3, 5, 1, "VALID", 1, 1)

    def gradient(case, dy_seed):
        got, want = gemm_weight_gradient(case, dy_seed)
        assert relative_error(got, want) <= 1e-5
        return np.asarray(got)

    first = gradient(large, 1)
    gradient(single, 2)
    np.testing.assert_array_equal(gradient(large, 1), first)


@needs_onednn
def test_gemm_weight_gradient_refuses_groups():
    spec = onednn.ConvSpec((1, 1), (1, 1, 1, 1), (1, 1), 2)
    with pytest.raises(ValueError, match="groups 1, not 2"):
        onednn.backward_weights_gemm(jnp.ones((1, 4, 4, 4)), jnp.ones((1, 4, 4, 4)),
                                     (3, 3, 2, 4), spec)  # fmt: skip


@needs_onednn
@pytest.mark.parametrize("case", [CASES[1], CASES[8], CASES[11]], ids=str)
def test_gradients_match_finite_differences(case):
    x, kernel = case_arrays(case)
    check_grads(conv_call(onednn.conv_general_dilated, case), (x, kernel), order=1,
                modes=("rev",), atol=2e-2, rtol=2e-2, eps=1e-2)  # fmt: skip


class OneDNNVariants(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_forward_equals_lax(self):
        if not AVAILABLE:
            self.skipTest(onednn.status().reason)
        x, kernel = case_arrays(CASES[4])
        got = self.variant(conv_call(onednn.conv_general_dilated, CASES[4]))(x, kernel)
        want = conv_call(lax.conv_general_dilated, CASES[4])(x, kernel)
        chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)


@needs_onednn
def test_vmap_maps_over_an_extra_axis():
    x, kernel = case_arrays(CASES[0])
    xs = jnp.stack([x, 2 * x, -x])
    kernels = jnp.stack([kernel, kernel[::-1], 0.5 * kernel])
    ours = jax.vmap(conv_call(onednn.conv_general_dilated, CASES[0]))
    want = jax.vmap(conv_call(lax.conv_general_dilated, CASES[0]))(xs, kernels)
    assert relative_error(jax.jit(ours)(xs, kernels), want) <= 1e-5
    loss = lambda f: lambda xs, ks: jnp.sum(jnp.sin(f(xs, ks)))
    got_grads = jax.grad(loss(ours), (0, 1))(xs, kernels)
    want_grads = jax.grad(loss(jax.vmap(conv_call(lax.conv_general_dilated, CASES[0]))), (0, 1))(
        xs, kernels
    )
    for got, want in zip(got_grads, want_grads, strict=True):
        assert relative_error(got, want) <= 1e-5


@needs_onednn
def test_pmap_runs_one_call_per_device():
    devices = jax.local_devices()[:4]
    x, kernel = case_arrays(CASES[1])
    xs = jnp.stack([x + i for i in range(len(devices))])
    conv = conv_call(onednn.conv_general_dilated, CASES[1])
    got = jax.pmap(lambda x: jax.grad(lambda k: jnp.sum(conv(x, k) ** 2))(kernel),
                   devices=devices)(xs)  # fmt: skip
    for i in range(len(devices)):
        want = jax.grad(lambda k, i=i: jnp.sum(conv_call(lax.conv_general_dilated, CASES[1])(
            xs[i], k) ** 2))(kernel)  # fmt: skip
        assert relative_error(got[i], want) <= 1e-5


def test_sharded_runs_take_xla_convolutions():
    model = models.create("resnet20", layers="onednn")
    assert parallel.model_for_mode(model, "sharded").layers == "fast"
    assert parallel.model_for_mode(models.create("resnet20"), "sharded").layers == "fast"
    assert parallel.model_for_mode(model, "pmap").layers == "onednn"


def resnet20_gradients(layers: str, dtype=jnp.float32):
    model = models.create("resnet20", layers=layers, dtype=dtype)
    state = create_train_state(model, optax.sgd(0.1), jax.random.PRNGKey(0), (1, 32, 32, 3))
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.standard_normal((8, 32, 32, 3)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 10, 8), jnp.int32),
    }

    def loss(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        logits, _ = model.apply(variables, batch["image"], train=True, mutable=["batch_stats"])
        return jnp.mean(classification(logits.astype(jnp.float32), batch["label"])[0])

    return jax.jit(jax.grad(loss))(state.params)


@needs_onednn
def test_resnet20_gradients_on_onednn_equal_xla():
    got, want = resnet20_gradients("onednn"), resnet20_gradients("fast")
    errors = jax.tree.map(relative_error, got, want)
    worst = max(jax.tree.leaves(errors))
    assert worst <= 1e-5, worst  # per leaf, through 19 convolutions and BatchNorms


NATIVE_BF16 = onednn.native_bfloat16()
needs_native_bf16 = pytest.mark.skipif(
    not NATIVE_BF16, reason=f"no bfloat16 instructions for oneDNN ({onednn.status().isa})"
)


@needs_native_bf16
@pytest.mark.parametrize("case", [CASES[i] for i in (0, 1, 3, 4, 9, 10)], ids=str)
def test_bfloat16_passes_equal_lax_to_bfloat16_rounding(case):
    x, kernel = (a.astype(jnp.bfloat16) for a in case_arrays(case))
    ours = conv_call(onednn.conv_general_dilated, case)
    want, want_vjp = jax.vjp(
        conv_call(lax.conv_general_dilated, case), x.astype(jnp.float32), kernel.astype(jnp.float32)
    )
    got, got_vjp = jax.jit(lambda x, k: jax.vjp(ours, x, k))(x, kernel)
    dy = jnp.asarray(np.random.default_rng(1).standard_normal(want.shape), jnp.bfloat16)
    spec = onednn.conv_spec(x, kernel, (case[6],) * 2, case[7], None, (case[8],) * 2, DIMS,
                            case[9], 1, None, None)  # fmt: skip
    # oneDNN's own bfloat16 kernel, not an emulation or its reference one
    assert "bf16" in onednn.implementation("forward", x.shape, kernel.shape, spec, 0, x.dtype)
    assert got.dtype == jnp.bfloat16
    # products exact, sums in float32, each result rounded once to bfloat16's 8 bits
    assert relative_error(got.astype(jnp.float32), want) <= 8e-3
    for got_grad, want_grad in zip(got_vjp(dy), want_vjp(dy.astype(jnp.float32)), strict=True):
        assert got_grad.dtype == jnp.bfloat16
        assert relative_error(got_grad.astype(jnp.float32), want_grad) <= 8e-3


@needs_onednn
def test_bfloat16_convolutions_take_onednn_only_with_bfloat16_instructions(monkeypatch):
    x, kernel = (a.astype(jnp.bfloat16) for a in case_arrays(CASES[0]))
    args = (x, kernel, (1, 1), "SAME", None, None, DIMS, 1, 1, None, None)
    if NATIVE_BF16:
        assert onednn.conv_spec(*args) is not None
        assert conv_function("auto", jnp.bfloat16) is tuning.conv_general_dilated
        assert conv_function("onednn", jnp.bfloat16) is onednn.conv_general_dilated
        assert fused_batch_norm("auto", jnp.bfloat16) and fused_batch_norm("onednn", jnp.bfloat16)
    assert not fold_batch_norm("auto", jnp.bfloat16)  # the folded evaluation call is float32's
    assert conv_function("plain", jnp.bfloat16) is jax.lax.conv_general_dilated
    monkeypatch.setattr(onednn, "native_bfloat16", lambda: False)
    assert onednn.conv_spec(*args) is None  # so `covering` sends it to XLA
    assert conv_function("auto", jnp.bfloat16) is jax.lax.conv_general_dilated
    assert not fused_batch_norm("auto", jnp.bfloat16)
    assert onednn.conv_spec(*(a.astype(jnp.float32) for a in args[:2]), *args[2:]) is not None


def flat(tree) -> jax.Array:
    return jnp.concatenate([leaf.ravel().astype(jnp.float32) for leaf in jax.tree.leaves(tree)])


@needs_native_bf16
def test_bfloat16_resnet20_gradients_on_onednn_are_as_close_to_float32_as_xlas():
    want = flat(resnet20_gradients("fast"))
    error = lambda layers: float(
        jnp.linalg.norm(flat(resnet20_gradients(layers, jnp.bfloat16)) - want)
        / jnp.linalg.norm(want)
    )
    # bfloat16 through 19 convolutions and BatchNorms moves the gradient by ~16 % of its norm
    # on any path (XLA's plain and fast layers alike); oneDNN's may not move it further
    onednn_error, plain_error, fast_error = error("onednn"), error("plain"), error("fast")
    assert onednn_error <= 1.5 * plain_error and onednn_error < 0.3, (onednn_error, plain_error)
    assert fast_error <= 1.5 * plain_error, (fast_error, plain_error)


def test_without_the_library_jaxdl_says_so_and_runs_on_xla(tmp_path):
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        from jaxdl.nn.conv import Conv, conv_function, fold_batch_norm, fused_batch_norm
        from jaxdl.ops import fast_cpu, onednn
        x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 4)), jnp.float32)
        k = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 4, 6)), jnp.float32)
        conv = conv_function("auto", jnp.float32)
        args = ((1, 1), "SAME", None, None, ("NHWC", "HWIO", "NHWC"))
        loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k, *args)))
        got = jax.jit(jax.value_and_grad(loss(conv), (0, 1)))(x, k)
        want = jax.jit(jax.value_and_grad(loss(fast_cpu.conv_general_dilated), (0, 1)))(x, k)
        pairs = zip(jax.tree.leaves(got), jax.tree.leaves(want))
        same = all(np.array_equal(a, b) for a, b in pairs)
        # BatchNorm with its shortcut and ReLU: the fused kernels' fallback is the fast path
        from jaxdl.nn.conv import BatchNorm
        y = jnp.asarray(np.random.default_rng(2).standard_normal((2, 8, 8, 6)), jnp.float32)
        outs = []
        for layers in ("auto", "fast"):
            bn = BatchNorm(layers=layers)
            v = bn.init(jax.random.key(0), y, True)
            f = lambda v, y, bn=bn: jax.grad(lambda y: jnp.sum(jnp.sin(
                bn.apply(v, y, True, 2 * y, True, mutable=["batch_stats"])[0])))(y)
            outs.append(jax.jit(f)(v, y))
        same = same and np.array_equal(outs[0], outs[1])
        print("available", onednn.status().available, "same", same)
        """
    )
    env = dict(os.environ, JAXDL_ONEDNN_LIBRARY=str(tmp_path / "missing.so"))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "available False same True" in done.stdout
    lines = [line for line in done.stderr.splitlines() if "oneDNN" in line]
    assert len(lines) == 1 and "convolutions run on XLA" in lines[0], done.stderr


@needs_onednn
def test_tuning_times_once_then_remembers(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXDL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("JAXDL_CONV_TUNING", "1")
    tuning.forget()
    spec = onednn.ConvSpec((1, 1), (1, 1, 1, 1), (1, 1), 1)
    shape, kernel_shape = (4, 9, 9, 8), (3, 3, 8, 8)
    timed = []
    real_time_pass = tuning.time_pass
    monkeypatch.setattr(
        tuning, "time_pass", lambda *a, **k: timed.append(a[0]) or real_time_pass(*a, **k)
    )
    first = {p: tuning.choose(p, shape, kernel_shape, spec) for p in tuning.PASSES}
    assert timed == list(tuning.PASSES) and all(tuning.valid(v) for v in first.values())
    assert "forward on" in capsys.readouterr().err
    key = tuning.shape_key(shape, kernel_shape, spec)
    assert tuning.choices()[key] == first
    # a new process on this machine reads the disk cache and times nothing
    tuning.forget()
    again = {p: tuning.choose(p, shape, kernel_shape, spec) for p in tuning.PASSES}
    assert again == first and timed == list(tuning.PASSES)
    # a resumed run's pinned choices win over the cache
    tuning.forget()
    flipped = {p: "xla" if first[p].startswith("onednn") else "onednn:1" for p in tuning.PASSES}
    tuning.pin({key: flipped})
    assert {p: tuning.choose(p, shape, kernel_shape, spec) for p in tuning.PASSES} == flipped
    with pytest.raises(ValueError, match=r"each one of onednn, onednn:N, gemm \(weight gra"):
        tuning.pin({key: {"forward": "cudnn"}})
    with pytest.raises(ValueError, match="gemm"):
        tuning.pin({key: {"forward": "gemm"}})  # the gemm kernel is a weight gradient only
    if NATIVE_BF16:  # bfloat16 is timed apart, without the (float32) gemm kernel
        bf16 = {p: tuning.choose(p, shape, kernel_shape, spec, jnp.bfloat16) for p in tuning.PASSES}
        assert timed == list(tuning.PASSES) * 2 and "gemm" not in bf16.values()
        assert tuning.choices()[key + " bf16"] == bf16
    tuning.forget()


@needs_onednn
@pytest.mark.parametrize(
    "choice",
    [
        ("onednn", "xla", "onednn"),
        ("xla", "onednn", "xla"),
        ("xla", "xla", "xla"),
        ("onednn:1", "onednn", "gemm"),
    ],
)
def test_tuned_conv_with_mixed_passes_equals_lax(choice, monkeypatch):
    case = CASES[1]
    x, kernel = case_arrays(case)
    spec = onednn.conv_spec(x, kernel, (2, 2), "SAME", None, (1, 1), DIMS, 1, 1, None, None)
    tuning.forget()
    tuning.pin(
        {
            tuning.shape_key(x.shape, kernel.shape, spec): dict(
                zip(tuning.PASSES, choice, strict=True)
            )
        }
    )
    try:
        loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
        got = jax.jit(jax.grad(loss(functools.partial(tuning.tuned_conv, spec=spec)), (0, 1)))(
            x, kernel
        )
        want = jax.grad(loss(conv_call(lax.conv_general_dilated, case)), (0, 1))(x, kernel)
        for g, w in zip(got, want, strict=True):
            assert relative_error(g, w) <= 1e-5
    finally:
        tuning.forget()


def test_a_damaged_choices_file_in_a_run_directory_is_one_sentence(tmp_path):
    from jaxdl.errors import ConfigError
    from jaxdl.rundir import CONV_CHOICES, RunDir

    run = RunDir(str(tmp_path))
    (tmp_path / CONV_CHOICES).write_text("[1, 2")
    with pytest.raises(ConfigError, match="is not a JSON object of convolution choices"):
        run.read_conv_choices()
    with pytest.raises(ConfigError, match=r"conv_choices.json: 'k' is \{'forward': 'gpu'\}"):
        tuning.pin({"k": {"forward": "gpu"}}, str(tmp_path / CONV_CHOICES))


def test_xla_is_chosen_only_when_clearly_faster():
    assert tuning.pick({"onednn": 2.0, "xla": 1.7}) == "onednn"  # 1.18x: not enough
    assert tuning.pick({"onednn": 2.0, "xla": 1.5}) == "xla"  # 1.33x
    assert tuning.pick({"onednn": 1.0, "xla": 3.0}) == "onednn"
    # the fastest of oneDNN's kernels, against which XLA must win by the margin
    assert tuning.pick({"onednn": 3.5, "onednn:1": 1.8, "xla": 1.6}) == "onednn:1"
    assert tuning.pick({"onednn": 3.5, "onednn:1": 1.8, "xla": 1.4}) == "xla"
    # oneDNN's first choice stays unless another kernel beats it by 1.1x
    assert tuning.pick({"onednn": 2.48, "onednn:1": 2.43, "xla": 3.4}) == "onednn"
    assert tuning.pick({"onednn": 2.0, "gemm": 1.9, "xla": 3.0}) == "onednn"
    assert tuning.pick({"onednn": 2.0, "gemm": 1.7, "xla": 3.0}) == "gemm"
    # XLA's margin counts against the kernel taken, not the fastest near-tie
    assert tuning.pick({"onednn": 2.0, "onednn:1": 1.9, "xla": 1.55}) == "xla"
    assert [tuning.valid(c) for c in ("onednn", "onednn:2", "xla", "onednn:x", "cudnn")] == [
        True, True, True, False, False,
    ]  # fmt: skip
    # the cache's key names the CPU's generation and how the choices were timed
    key = tuning.machine_key()
    assert tuning.cpu_model() in key and tuning.TIMING in key


def test_the_candidates_are_timed_in_turn_and_each_keeps_its_best():
    order = []

    def sleeper(name, seconds):
        def run():
            order.append(name)
            time.sleep(seconds)
            return jnp.zeros(())

        return run

    timings = tuning.best_ms_interleaved(
        {"slow": sleeper("slow", 0.004), "fast": sleeper("fast", 0.001)}, repeats=3, calls=1
    )
    assert 4.0 <= timings["slow"] < 8.0 and 1.0 <= timings["fast"] < 4.0
    # two untimed calls each, then the rounds alternate
    assert order == ["slow"] * 2 + ["fast"] * 2 + ["slow", "fast"] * 3


@needs_onednn
def test_each_of_onednns_kernels_for_a_pass_is_another_and_equals_lax():
    spec = onednn.ConvSpec((1, 1), (1, 1, 1, 1), (1, 1), 1)
    x, kernel = case_arrays((4, 12, 12, 16, 3, 16, 1, "SAME", 1, 1))
    dy = jnp.asarray(np.random.default_rng(2).standard_normal(x.shape[:3] + (16,)), jnp.float32)
    reference = conv_call(lax.conv_general_dilated, (4, 12, 12, 16, 3, 16, 1, "SAME", 1, 1))
    want, want_vjp = jax.vjp(reference, x, kernel)
    want_dx, want_dk = want_vjp(dy)
    for pass_name in onednn.PASSES:
        names = [onednn.implementation(pass_name, x.shape, kernel.shape, spec, i) for i in range(2)]
        assert None not in names and names[0] != names[1], (pass_name, names)
    for impl in range(2):
        assert relative_error(jax.jit(onednn.forward, static_argnums=(2, 3))(x, kernel, spec, impl),
                              want) <= 1e-5  # fmt: skip
        dx = onednn.backward_data(dy, kernel, x.shape, spec, impl)
        dk = onednn.backward_weights(x, dy, kernel.shape, spec, impl)
        assert relative_error(dx, want_dx) <= 1e-5 and relative_error(dk, want_dk) <= 1e-5
    assert onednn.implementation("forward", x.shape, kernel.shape, spec, 99) is None


@needs_onednn
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3], CASES[10], CASES[12]], ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_inference_convolution_equals_lax_with_bias_residual_and_relu(case, relu):
    x, kernel = case_arrays(case)
    rng = np.random.default_rng(3)
    conv = conv_call(lax.conv_general_dilated, case)(x, kernel)
    bias = jnp.asarray(rng.standard_normal(conv.shape[-1]), jnp.float32)
    residual = jnp.asarray(rng.standard_normal(conv.shape), jnp.float32)
    *_, stride, padding, dilation, groups = case
    spec = onednn.conv_spec(x, kernel, (stride, stride), padding, None, (dilation, dilation),
                            DIMS, groups, 1, None, None)  # fmt: skip
    tolerance = 1e-5 if kernel.shape[0] <= 3 else 1e-4
    for extra in (None, residual):
        want = conv + bias + (0.0 if extra is None else extra)
        want = jnp.maximum(want, 0.0) if relu else want
        # the residual's buffer becomes the output's: the caller's residual must survive
        run = jax.jit(lambda x, k, b, r: (onednn.inference(x, k, b, spec, r, relu), r))
        got, kept = run(x, kernel, bias, extra)
        assert relative_error(got, want) <= tolerance
        if extra is not None:
            np.testing.assert_array_equal(kept, residual)
    assert onednn.implementation("inference", x.shape, kernel.shape, spec) is not None

    # differentiable, as attribution methods need: against autodiff of the reference and
    # (away from the ReLU's kink) finite differences
    def reference(x, k, b, r):
        y = conv_call(lax.conv_general_dilated, case)(x, k) + b + r
        return jnp.maximum(y, 0.0) if relu else y

    ours = lambda x, k, b, r: onednn.inference(x, k, b, spec, r, relu)  # noqa: E731
    operands = (x, kernel, bias, residual)
    dy = jnp.asarray(rng.standard_normal(conv.shape), jnp.float32)
    got = jax.vjp(ours, *operands)[1](dy)
    for got_grad, want_grad in zip(got, jax.vjp(reference, *operands)[1](dy), strict=True):
        assert relative_error(got_grad, want_grad) <= tolerance
    if not relu:
        check_grads(ours, operands, order=1, modes=("rev",), atol=2e-2, rtol=2e-2, eps=1e-2)


@needs_onednn
@pytest.mark.parametrize("layers", ["onednn", "auto"])
def test_evaluation_folds_batch_norm_into_one_onednn_call_per_conv(layers, monkeypatch):
    """ResNet-20 in evaluation: each of its 19 ConvBN layers is one oneDNN inference call,
    and its logits equal the unfolded layers' (the XLA path's) to float32 rounding."""
    monkeypatch.setenv("JAXDL_CONV_TUNING", "0")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 32, 32, 3)), jnp.float32)
    variables = models.create("resnet20", num_classes=10, layers="fast").init(
        jax.random.PRNGKey(0), x, train=False
    )
    stats = variables["batch_stats"]  # running statistics away from the initial 0 and 1
    keys = iter(jax.random.split(jax.random.PRNGKey(1), len(jax.tree.leaves(stats))))
    stats = jax.tree.map(lambda v: v + 0.3 * jax.random.uniform(next(keys), v.shape), stats)
    variables = {**variables, "batch_stats": stats}
    logits = {}
    for impl in (layers, "fast"):
        model = models.create("resnet20", num_classes=10, layers=impl)
        apply = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False))
        hlo = apply.lower(variables, x).as_text()
        assert hlo.count("jaxdl_conv_inference") == (19 if impl == layers else 0)
        logits[impl] = apply(variables, x)
        assert bool(jnp.all(jnp.isfinite(logits[impl])))
    assert relative_error(logits[layers], logits["fast"]) <= 1e-5
    # a caller capturing intermediates (jaxdl.tools.introspect) still sees all 19 Conv outputs
    _, captured = models.create("resnet20", num_classes=10, layers=layers).apply(
        variables,
        x[:1],
        train=False,
        capture_intermediates=lambda module, _: isinstance(module, Conv),
        mutable=["intermediates"],
    )
    assert len(jax.tree.leaves(captured)) == 19
    # the folded model is differentiable (saliency maps): its input gradient equals XLA's
    grads = {}
    for impl in (layers, "fast"):
        model = models.create("resnet20", num_classes=10, layers=impl)
        score = lambda x, model=model: model.apply(variables, x, train=False)[:, 3].sum()
        grads[impl] = jax.jit(jax.grad(score))(x)
    assert relative_error(grads[layers], grads["fast"]) <= 1e-4


def test_the_status_command_says_what_auto_means_here():
    done = subprocess.run([sys.executable, "-m", "jaxdl.ops.onednn"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert lines["oneDNN"] == onednn.status().line()
    if AVAILABLE:
        assert "fastest of oneDNN's kernels and XLA's" in lines["--layers auto, float32"]
    bf16 = lines["--layers auto, bfloat16"]
    assert bf16.startswith("oneDNN's bfloat16 kernels" if NATIVE_BF16 else "flax's plain layers")

"""One step, three ways to run it: single device, pmap and a sharded mesh agree (8 fake CPU
devices, set up in conftest.py)."""

import functools
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdl import models, parallel
from jaxdl.checkpoint import Checkpointer
from jaxdl.errors import ConfigError
from jaxdl.state import count_params, create_train_state
from jaxdl.step import train_step

DEVICES = 8
pytestmark = pytest.mark.skipif(
    jax.device_count() < DEVICES, reason="needs --xla_force_host_platform_device_count=8"
)


def resnet_state(mode, dtype=jnp.float32, size=32, **options):
    model = models.create("resnet20", num_classes=10, dtype=dtype, **options)
    model = parallel.model_for_mode(model, mode)
    tx = optax.sgd(0.1, momentum=0.9, nesterov=True)
    state = create_train_state(model, tx, jax.random.PRNGKey(0), (1, size, size, 3))
    cast = lambda tree: jax.tree.map(lambda x: x.astype(dtype), tree)
    return state.replace(params=cast(state.params), batch_stats=cast(state.batch_stats))


def batches(count, size=64, dtype=jnp.float32, pixels=32):
    for seed in range(count):
        kx, ky = jax.random.split(jax.random.PRNGKey(100 + seed))
        yield {
            "image": jax.random.normal(kx, (size, pixels, pixels, 3)).astype(dtype),
            "label": jax.random.randint(ky, (size,), 0, 10),
        }


def trajectory(mode, dtype, steps=5, pixels=32, batch_size=64, **options):
    """Params and BN statistics after each of `steps` steps on the same global batches."""
    runner = parallel.create_runner(mode, l2_weight=5e-4)
    state = runner.put_state(resnet_state(mode, dtype, pixels, **options))
    snapshots = []
    for batch in batches(steps, size=batch_size, dtype=dtype, pixels=pixels):
        state, metrics = runner.train(state, batch)
        local = jax.device_get(runner.local_state(state))
        snapshots.append((local.params, local.batch_stats, jax.device_get(metrics)))
    return snapshots


@pytest.fixture(scope="module")
def float32_trajectories():
    # The modes are compared on flax's plain layers: under pmap, BatchNorm shares statistics
    # across devices and so always takes the plain path, while the single and sharded steps
    # would take the XLA:CPU one (same maths, other rounding; tests/test_fast_cpu.py).
    return {mode: trajectory(mode, jnp.float32, steps=3, layers="plain") for mode in parallel.MODES}


# Float32, ResNet-20, 32x32 images, global batch 64. XLA:CPU's single-device step is itself
# ~1.5e-4 away from the exact (float64) update after one step: its weight-gradient reductions
# over 64 x 32 x 32 positions accumulate rounding, while the 8-way split sums shorter runs and
# lands closer. Measured per parameter (plain layers): the largest error is the stem
# convolution's kernel in every mode, single 1.54e-4, pmap and sharded 6.5e-5 (next: block
# kernels, 6.6e-5 single, 3.3e-5 split); BatchNorm statistics 1.4e-5 single, 1.1e-6 split. So
# the modes agree with each other to that precision, not to 1e-5; the float64 test below shows
# that the arithmetic itself is the same to 1e-10. A semantic slip (a missing pmean, BatchNorm
# statistics of one shard) moves parameters by 1e-2 or more.
@pytest.mark.parametrize("mode", ["pmap", "sharded"])
@pytest.mark.slow
def test_one_step_matches_single_device(float32_trajectories, mode):
    params, stats, metrics = float32_trajectories[mode][0]
    ref_params, ref_stats, ref_metrics = float32_trajectories["single"][0]
    chex.assert_trees_all_close(params, ref_params, atol=5e-4, rtol=0)
    chex.assert_trees_all_close(stats, ref_stats, atol=5e-5, rtol=0)
    np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], atol=1e-5)


@pytest.mark.parametrize("mode", ["pmap", "sharded"])
@pytest.mark.slow
def test_later_steps_track_the_single_device_losses(float32_trajectories, mode):
    # Steps at learning rate 0.1 on random images amplify float32 rounding to ~1e-2 in
    # some BatchNorm offsets in every mode (single included); the losses still agree closely.
    losses = [m["loss"] for _, _, m in float32_trajectories[mode]]
    reference = [m["loss"] for _, _, m in float32_trajectories["single"]]
    np.testing.assert_allclose(losses, reference, rtol=5e-3)


@pytest.mark.slow
def test_pmap_and_sharded_agree_closely(float32_trajectories):
    params, stats, _ = float32_trajectories["pmap"][0]
    ref_params, ref_stats, _ = float32_trajectories["sharded"][0]
    chex.assert_trees_all_close(params, ref_params, atol=1e-5, rtol=0)
    chex.assert_trees_all_close(stats, ref_stats, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_float64_modes_are_the_same_arithmetic():
    """The same blocks one per stage, 8x8 images, batch 16, 2 steps (float64 convolutions
    compile and run slowly on CPU)."""
    with jax.enable_x64(True):
        runs = {
            mode: trajectory(
                mode, jnp.float64, steps=2, pixels=8, batch_size=16, stage_sizes=(1, 1, 1)
            )
            for mode in parallel.MODES
        }
    for mode in ("pmap", "sharded"):
        for step in (0, 1):
            chex.assert_trees_all_close(
                runs[mode][step][0], runs["single"][step][0], atol=1e-10, rtol=0
            )
            chex.assert_trees_all_close(
                runs[mode][step][1], runs["single"][step][1], atol=1e-10, rtol=0
            )


def test_runners_use_all_devices():
    assert parallel.create_runner("pmap").device_count == DEVICES
    assert parallel.create_runner("sharded").device_count == DEVICES
    assert parallel.create_runner("single").device_count == 1


def test_batch_not_divisible_by_devices_is_one_sentence():
    with pytest.raises(
        ConfigError,
        match="batch size 100 does not divide by the 8 devices; "
        "use a multiple of 8, such as 96 or 104",
    ):
        parallel.check_divisible(100, 8)
    runner = parallel.create_runner("sharded")
    state = runner.put_state(resnet_state("sharded"))
    with pytest.raises(ConfigError, match="batch size 60 does not divide by the 8 devices"):
        runner.train(state, next(batches(1, size=60)))


def test_unknown_mode():
    with pytest.raises(ConfigError, match="unknown --parallel 'tpu'"):
        parallel.create_runner("tpu")


@pytest.mark.parametrize(
    "writer, reader", [("pmap", "single"), ("single", "sharded"), ("pmap", "sharded")]
)
@pytest.mark.slow
def test_checkpoint_restores_across_modes(tmp_path, writer, reader):
    runner = parallel.create_runner(writer)
    state, _ = runner.train(
        runner.put_state(resnet_state(writer, stage_sizes=(1, 1, 1))), next(batches(1))
    )
    saved = runner.local_state(state)
    checkpointer = Checkpointer(str(tmp_path))
    meta = {"model": "resnet20", "parameters": count_params(saved.params), "epoch": 1, "index": 1}
    checkpointer.save(saved, meta)
    restored, meta = checkpointer.restore_latest(
        resnet_state(reader, stage_sizes=(1, 1, 1)), "resnet20"
    )
    chex.assert_trees_all_equal(jax.device_get(restored.params), jax.device_get(saved.params))
    reader_runner = parallel.create_runner(reader)
    placed = reader_runner.put_state(restored)
    next_state, metrics = reader_runner.train(placed, next(batches(1)))
    assert np.isfinite(float(metrics["loss"]))
    assert int(reader_runner.local_state(next_state).step) == 2


class PmapVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True, with_pmap=True)
    def test_step_variants_agree(self):
        state = create_train_state(
            models.create("mlp", num_classes=3, widths=(8,)),
            optax.sgd(0.1),
            jax.random.PRNGKey(0),
            (1, 6),
        )
        batch = {
            "image": jax.random.normal(jax.random.PRNGKey(1), (4, 6)),
            "label": jnp.array([0, 1, 2, 1]),
        }
        reference, _ = jax.jit(train_step)(state, batch)
        if self.variant.type == chex.ChexVariantType.WITH_PMAP:
            # chex gives every device the whole batch; averaging equal gradients changes nothing
            step = self.variant(functools.partial(train_step, axis_name="i"))
        else:
            step = self.variant(train_step)
        new_state, _ = step(state, batch)
        chex.assert_trees_all_close(new_state.params, reference.params, atol=1e-6)


def test_experiment_runs_sharded_end_to_end(tmp_path, data_dir):
    from experiments import mnist_mlp

    results = mnist_mlp.main(
        [
            "--train_limit",
            "600",
            "--test_limit",
            "400",
            "--epochs",
            "3",
            "--batch_size",
            "32",
            "--eval_batch_size",
            "200",
            "--widths",
            "32",
            "--parallel",
            "sharded",
            "--quiet",
            "--workdir",
            str(tmp_path),
        ]
    )
    assert results["devices"] == DEVICES and results["test_count"] == 400
    assert results["test_accuracy"] > 0.5
    assert os.path.exists(tmp_path / "checkpoints" / "latest")


def test_dropout_masks_do_not_depend_on_the_device_split():
    """One global batch, one step key: the masks of `single`, `pmap` and `sharded` (8 devices)
    are bit-identical, and they differ between examples and between steps."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxdl.nn import Dropout

    x = jnp.ones((64, 5, 3))
    key = jax.random.PRNGKey(7)

    def drop(axis_name=None):
        layer = Dropout(0.5, axis_name=axis_name)
        return lambda key, x: layer.apply({}, x, rngs={"dropout": key})

    single = jax.jit(drop())(key, x)
    split = x.reshape(DEVICES, 8, 5, 3)
    pmapped = jax.pmap(drop("batch"), axis_name="batch", in_axes=(None, 0))(key, split)
    mesh = Mesh(np.asarray(jax.devices()[:DEVICES]), ("data",))
    sharded = jax.jit(
        drop(), in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P("data")))
    )(key, x)
    np.testing.assert_array_equal(np.asarray(pmapped).reshape(x.shape), single)
    np.testing.assert_array_equal(sharded, single)
    assert set(np.unique(single)) == {0.0, 2.0}
    assert 0.4 < float(np.mean(single == 0)) < 0.6
    assert not np.array_equal(single[0], single[1])  # each example its own mask
    assert not np.array_equal(jax.jit(drop())(jax.random.PRNGKey(8), x), single)


def test_mlp_with_dropout_trains_alike_in_every_mode():
    def run(mode):
        model = parallel.model_for_mode(
            models.create("mlp", num_classes=10, widths=(64,), dropout_rate=0.5), mode
        )
        state = create_train_state(model, optax.sgd(0.1), jax.random.PRNGKey(0), (1, 28, 28, 1))
        runner = parallel.create_runner(mode)
        state = runner.put_state(state)
        for batch in batches(3, size=64, pixels=28):
            batch = {"image": batch["image"][..., :1], "label": batch["label"]}
            state, _ = runner.train(state, batch)
        return jax.device_get(runner.local_state(state).params)

    single = run("single")
    for mode in ("pmap", "sharded"):
        chex.assert_trees_all_close(run(mode), single, atol=1e-5, rtol=0)

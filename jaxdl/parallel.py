"""The three ways to run the same pure step: one device, `jax.pmap`, or `jax.jit` on a mesh.

* ``single``: plain `jax.jit` on the default device.
* ``pmap``: the state is replicated on every device and the batch reshaped to
  [devices, batch / devices, ...]; the step runs with `axis_name="batch"`, so gradients,
  metrics and BatchNorm statistics are averaged across devices (`lax.pmean`), and models are
  built with the same BatchNorm `axis_name`. Kept because users ask for it.
* ``sharded``: a `jax.sharding.Mesh` over the devices with one axis, ``"data"``; the batch is
  split along it with a `NamedSharding`, the state replicated, and the step jitted once with
  those in/out shardings. XLA inserts the cross-device reductions itself (BatchNorm statistics
  over the global batch included). This is what current JAX recommends for new code, and the
  mode that spans several processes (`jaxdl.distributed.launch`, `jaxdl.distributed.setup`):
  the mesh holds every process's devices, and each process places only its own devices' rows
  of the global batch.

All three give the same new parameters for the same global batch, within float tolerance
(`tests/test_parallel.py`). Checkpoints, logging and plots always see a single-device copy of
the state (`Runner.local_state`), so a checkpoint written in one mode restores in any other.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxdl.errors import ConfigError
from jaxdl.models.registry import has_field
from jaxdl.nn.conv import use_fast_path
from jaxdl.state import TrainState
from jaxdl.step import classification, eval_step, train_step

MODES = ("single", "pmap", "sharded")
PMAP_AXIS = "batch"
MESH_AXIS = "data"


def check_divisible(batch_size: int, devices: int, what: str = "batch size") -> None:
    """One sentence when a global batch cannot be split evenly over the devices."""
    if batch_size % devices:
        lower = max(devices, batch_size // devices * devices)
        raise ConfigError(
            f"{what} {batch_size} does not divide by the {devices} devices; use a multiple of "
            f"{devices}, such as {lower} or {lower + devices}."
        )


def model_for_mode(model: nn.Module, mode: str) -> nn.Module:
    """Under pmap, BatchNorm must average its statistics over the pmap axis. A sharded jit
    takes XLA's convolutions: XLA cannot partition the oneDNN kernels' custom calls, so it
    would gather every layer's whole batch onto every device (`jaxdl.ops.onednn`)."""
    if mode == "pmap" and has_field(model, "axis_name"):
        return model.clone(axis_name=PMAP_AXIS)
    if mode == "sharded" and getattr(model, "layers", None) in ("auto", "onednn"):
        xla = "fast" if use_fast_path(model.layers, getattr(model, "dtype", "float32")) else "plain"
        return model.clone(layers=xla)
    return model


@dataclasses.dataclass
class Runner:
    """Runs `train_step` / `eval_step` in one of `MODES` over `devices`.

    `train(state, batch)` and `evaluate(state, batch)` take a placed state (`put_state`) and
    a global batch as the data pipeline makes it (`{"image": f32[B, ...], ...}` on any device);
    `local_state` gives back a single-device state for checkpoints and plots.
    """

    mode: str
    devices: list
    train: Callable
    evaluate: Callable
    evaluate_flip: Callable
    put_state: Callable[[TrainState], Any]
    local_state: Callable[[Any], TrainState]

    @property
    def device_count(self) -> int:
        return len(self.devices)


def create_runner(
    mode: str = "single",
    devices: list | None = None,
    objective: Callable = classification,
    target: str = "label",
    step: Callable | None = None,
    **step_options,
) -> Runner:
    """A `Runner` for `mode`; `step_options` (label_smoothing, l2_weight) go to `train_step`,
    the `objective` and the `target` (the batch entry it compares against) to both steps.
    A task with a step of its own (two players: `jaxdl.adversarial.gan_train_step`) passes it
    as `step`, with its options; it takes `axis_name` like `train_step`. `evaluate_flip` is
    `evaluate` with flip test-time augmentation."""
    if mode not in MODES:
        raise ConfigError(f"unknown --parallel {mode!r}; choose one of {', '.join(MODES)}.")
    if mode != "sharded" and jax.process_count() > 1:
        raise ConfigError(
            f"--parallel {mode} runs within one process, but this run has "
            f"{jax.process_count()} processes; use --parallel sharded."
        )
    default = {"single": jax.local_devices()[:1], "pmap": jax.local_devices()}
    # sharded: every process's devices; each process feeds the rows its own devices hold
    devices = list(devices or default.get(mode, jax.devices()))
    if step is None:
        step, step_options = train_step, step_options | {"objective": objective, "target": target}
    train_fn = functools.partial(step, **step_options)
    eval_fn = functools.partial(eval_step, objective=objective, target=target)
    if mode == "single":
        devices = devices[:1]
        compiled = jax.jit(train_fn, donate_argnums=0)
        evaluate, evaluate_flip = (
            jax.jit(functools.partial(eval_fn, flip_tta=flip)) for flip in (False, True)
        )
        return Runner(
            mode,
            devices,
            compiled,
            evaluate,
            evaluate_flip,
            lambda s: jax.device_put(s, devices[0]),
            lambda s: s,
        )
    if mode == "pmap":
        return _pmap_runner(devices, train_fn, eval_fn)
    return _sharded_runner(devices, train_fn, eval_fn)


def replicate(tree, devices: list):
    """One copy of every array per device, stacked on a new leading axis and sharded along it
    (what `jax.pmap` takes; `jax.device_put_replicated` is deprecated)."""
    sharding = NamedSharding(Mesh(np.asarray(devices), (PMAP_AXIS,)), P(PMAP_AXIS))
    count = len(devices)
    stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (count, *np.shape(x))), tree)
    return jax.device_put(stacked, sharding)


def _split(batch: dict, count: int) -> dict:
    return jax.tree.map(lambda x: x.reshape(count, x.shape[0] // count, *x.shape[1:]), batch)


def _pmap_runner(devices: list, train_fn: Callable, eval_fn: Callable) -> Runner:
    count = len(devices)
    step = jax.pmap(
        functools.partial(train_fn, axis_name=PMAP_AXIS),
        axis_name=PMAP_AXIS,
        devices=devices,
        donate_argnums=0,
    )
    evaluate, evaluate_flip = (
        jax.pmap(
            functools.partial(eval_fn, axis_name=PMAP_AXIS, flip_tta=flip),
            axis_name=PMAP_AXIS,
            devices=devices,
        )
        for flip in (False, True)
    )

    def train(state, batch):
        check_divisible(jax.tree.leaves(batch)[0].shape[0], count)
        state, metrics = step(state, _split(batch, count))
        return state, jax.tree.map(lambda x: x[0], metrics)

    def evaluator(compiled):
        def run(state, batch):
            check_divisible(jax.tree.leaves(batch)[0].shape[0], count, "evaluation batch size")
            return jax.tree.map(lambda x: x[0], compiled(state, _split(batch, count)))

        return run

    return Runner(
        "pmap",
        devices,
        train,
        evaluator(evaluate),
        evaluator(evaluate_flip),
        put_state=lambda s: replicate(s, devices),
        local_state=lambda s: jax.tree.map(lambda x: x[0], s),
    )


def to_global(tree, sharding: NamedSharding):
    """Places host or single-device arrays, identical in every process, with `sharding`. Each
    process transfers only the slices its own devices hold (`jax.device_put` alone would need
    every device to be this process's)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def place(x):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(place, tree)


def first_local_copy(tree):
    """A single-device copy of a replicated state: this process's first shard of each array."""
    return jax.tree.map(lambda x: x.addressable_data(0), tree)


def _sharded_runner(devices: list, train_fn: Callable, eval_fn: Callable) -> Runner:
    count = len(devices)
    mesh = Mesh(np.asarray(devices), (MESH_AXIS,))
    replicated = NamedSharding(mesh, P())
    split = NamedSharding(mesh, P(MESH_AXIS))
    step = jax.jit(
        train_fn,
        in_shardings=(replicated, split),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    evaluate, evaluate_flip = (
        jax.jit(
            functools.partial(eval_fn, flip_tta=flip),
            in_shardings=(replicated, split),
            out_shardings=replicated,
        )
        for flip in (False, True)
    )

    def put_batch(batch):
        check_divisible(jax.tree.leaves(batch)[0].shape[0], count)
        return to_global(batch, split)

    return Runner(
        "sharded",
        devices,
        train=lambda state, batch: step(state, put_batch(batch)),
        evaluate=lambda state, batch: evaluate(state, put_batch(batch)),
        evaluate_flip=lambda state, batch: evaluate_flip(state, put_batch(batch)),
        put_state=lambda s: to_global(s, replicated),
        local_state=first_local_copy,
    )

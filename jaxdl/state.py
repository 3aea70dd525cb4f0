"""TrainState: everything a step reads and writes, as one pytree.

`step`, `params`, `batch_stats` (BatchNorm running averages; an empty dict for models without
BatchNorm), `opt_state` and `rng` (the run's base key; the step folds `step` into it so dropout
masks differ every step yet a resumed run draws the same ones). `apply_fn` and `tx` are static.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
    batch_stats: Any = None
    rng: jax.Array | None = None


def init_variables(
    model: nn.Module, rng: jax.Array, input_shape: tuple[int, ...], input_dtype: Any = jnp.float32
) -> dict:
    """`model.init` on zeros of `input_shape` ([1, H, W, C], [1, D], or token ids [1, T] with
    `input_dtype` int32), jitted."""
    dummy = jnp.zeros(input_shape, input_dtype)
    return jax.jit(lambda key: model.init({"params": key, "dropout": key}, dummy, train=False))(rng)


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    input_shape: tuple[int, ...],
    input_dtype: Any = jnp.float32,
) -> TrainState:
    """A fresh state for `model` with example input shape `input_shape` (batch dimension 1)
    and dtype `input_dtype` (int32 for token ids)."""
    init_rng, step_rng = jax.random.split(rng)
    variables = init_variables(model, init_rng, input_shape, input_dtype)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=tx,
        rng=step_rng,
    )


def graft(fresh: Any, trained: Any) -> tuple[Any, list[str], list[str]]:
    """`fresh` (a nested dict of arrays: params or batch_stats) with every entry that `trained`
    has at the same path and with the same shape replaced by the trained one; returns it with
    the paths taken over and the paths left fresh ("Dense_0/kernel", ...)."""
    flat_trained = {
        "/".join(str(getattr(k, "key", k)) for k in path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(trained)
    }
    taken, left = [], []

    def pick(path, leaf):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        source = flat_trained.get(name)
        if source is not None and tuple(source.shape) == tuple(leaf.shape):
            taken.append(name)
            return jnp.asarray(source, leaf.dtype)
        left.append(name)
        return leaf

    return jax.tree_util.tree_map_with_path(pick, fresh), taken, left


def model_variables(state: Any) -> dict[str, Any]:
    """The variables `state.apply_fn` takes: `{"params"}`, with `"batch_stats"` where the
    model has BatchNorm statistics."""
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def count_params(params) -> int:
    """Number of scalars in a parameter tree (works on shapes from `jax.eval_shape` too)."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(params))

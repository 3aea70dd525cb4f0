"""Looking inside a trained network: every convolution's output for an image, the first layer's
filters and the feature maps after each stage. Computations only; `jaxdl.plots.images` draws
them. What units respond to is `jaxdl.tools.features`, which pixels a decision rests on
`jaxdl.tools.attribution`."""

from __future__ import annotations

import jax
import numpy as np

from jaxdl.nn.conv import Conv
from jaxdl.state import TrainState


def _in_call_order(tree, path=()):
    """(path, leaf) pairs of nested dicts in insertion order, which for the intermediates of an
    eager (not jitted) `apply` is the order the modules ran in. (`jax.tree_util` sorts keys,
    and so do the parameter dicts that come out of `jax.jit`.)"""
    if hasattr(tree, "items"):
        for key, value in tree.items():
            yield from _in_call_order(value, (*path, key))
    elif isinstance(tree, (tuple, list)):
        for index, value in enumerate(tree):
            yield from _in_call_order(value, (*path, str(index)))
    else:
        yield path, tree


def conv_outputs(state: TrainState, image: jax.Array) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """Every `jaxdl.nn.Conv` output for one image f32[H, W, C], in the order the layers ran, as
    (module path, f32[h, w, c]); the path indexes `state.params`."""
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    _, captured = state.apply_fn(
        variables,
        image[None],
        train=False,
        capture_intermediates=lambda module, _: isinstance(module, Conv),
        mutable=["intermediates"],
    )
    # each path ends in (..., "__call__", "0"): the module path is what precedes them
    return [
        (path[:-2], np.asarray(value[0]))
        for path, value in _in_call_order(captured.get("intermediates", {}))
    ]


def first_conv_kernel(params, outputs) -> np.ndarray | None:
    """The kernel [kh, kw, C, F] of the first convolution in `outputs` (from `conv_outputs`),
    or None when the model has no convolution."""
    if not outputs:
        return None
    node = params
    for key in outputs[0][0]:
        node = node[key]
    return np.asarray(node["conv"]["kernel"])  # jaxdl.nn.Conv keeps its kernel in "conv"


def conv_stage_outputs(outputs, max_stages: int = 4):
    """Feature maps after each convolution stage, from `conv_outputs`: the output of the last
    convolution at each spatial resolution, in order, as (name, f32[h, w, c])."""
    stages: list[tuple[str, np.ndarray]] = []
    for path, fmap in outputs:
        name = "/".join(path)
        if stages and stages[-1][1].shape[:2] == fmap.shape[:2]:
            stages[-1] = (name, fmap)
        else:
            stages.append((name, fmap))
    return stages[:max_stages]

"""What a model costs, computed from shapes: parameter counts (`jax.eval_shape`, nothing is
allocated) and forward FLOPs (XLA's cost analysis of the compiled forward pass)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.models.registry import has_field
from jaxdl.state import count_params


def variable_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """The shapes of `model.init` on input f32[input_shape], without allocating anything."""
    dummy = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), dummy)


def param_count(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Scalars in the `params` collection (BatchNorm scale and bias included, running
    statistics excluded) for input of shape `input_shape` (with a batch dimension)."""
    return count_params(variable_shapes(model, input_shape)["params"])


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """FLOPs of one inference forward pass on f32[input_shape], by XLA's cost analysis (a
    multiply-add counts as 2).

    Traced with flax's plain layers: the count is the model's own arithmetic, not that of the
    XLA:CPU formulations (`jaxdl.ops.fast_cpu` runs a grouped convolution as a dense one with a
    block-diagonal kernel, groups times the multiply-adds)."""
    if has_field(model, "layers"):
        model = model.clone(layers="plain")
    variables = variable_shapes(model, input_shape)
    dummy = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    lowered = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, dummy)
    return xla_flops(lowered.compile())


def xla_flops(compiled) -> float:
    """The FLOP count XLA's cost analysis gives a compiled computation."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older jax returned one dict per device
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))

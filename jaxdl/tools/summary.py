"""A model explains its own shape: `python -m jaxdl.tools.summary MODEL [--input 32x32x3]`.

One row per layer (to `--depth` levels of nesting): output shape, parameters, forward FLOPs
(XLA's cost analysis of that layer's computation) and receptive field, with totals at the
bottom. Nothing is allocated: shapes come from `jax.eval_shape`.

Receptive field: a k x k layer with stride s (and dilation d: it spans k' = d (k - 1) + 1
pixels, so read k' for k) grows the field by (k - 1) * jump and multiplies
the jump (the input-pixel distance between neighbouring outputs) by s. A block with branches
(residual, inception) gets the largest field among its layers. Global pooling and dense layers
are not counted: the last row's field is that of the last spatial layer.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl import cli, models
from jaxdl.errors import ConfigError
from jaxdl.models.registry import has_field
from jaxdl.nn.conv import Conv
from jaxdl.nn.pool import AvgPool, MaxPool
from jaxdl.state import count_params
from jaxdl.tools import cost


@dataclasses.dataclass(frozen=True)
class Field:
    """Receptive field `size` (pixels) and `jump` (input pixels between adjacent outputs)."""

    size: int = 1
    jump: int = 1

    def through(self, kernel: int, stride: int) -> Field:
        return Field(self.size + (kernel - 1) * self.jump, self.jump * stride)


def receptive_fields(layers: Sequence[tuple[int, int]]) -> list[Field]:
    """The field after each (kernel, stride) layer of a plain stack: two 3x3 convs give 5;
    3x3 conv, 2x2 pool stride 2, 3x3 conv give 8."""
    fields, field = [], Field()
    for kernel, stride in layers:
        field = field.through(kernel, stride)
        fields.append(field)
    return fields


def _kernel_and_stride(module: nn.Module) -> tuple[int, int] | None:
    if isinstance(module, Conv):
        first = lambda v: v if isinstance(v, int) else v[0]
        k, s, d = first(module.kernel_size), first(module.strides), first(module.dilation)
        return d * (k - 1) + 1, s  # a dilated kernel spans d (k - 1) + 1 pixels
    if isinstance(module, (MaxPool, AvgPool)):
        return module.window, module.stride or module.window
    return None


@dataclasses.dataclass
class Row:
    path: tuple[str, ...]
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: float
    field: Field


def _subtree(variables: dict, path: tuple[str, ...]) -> dict:
    out = {}
    for collection, tree in variables.items():
        node = tree
        for key in path:
            node = node.get(key) if hasattr(node, "get") else None
            if node is None:
                break
        if node is not None:
            out[collection] = node
    return out


def _layer_flops(module: nn.Module, variables: dict, args: tuple, kwargs: dict) -> float:
    """XLA's FLOP count for `module(*args, **kwargs)` alone (array arguments as shapes)."""
    is_array = [
        isinstance(a, (jax.Array, jax.ShapeDtypeStruct)) or hasattr(a, "aval") for a in args
    ]
    shapes = [
        jax.ShapeDtypeStruct(a.shape, a.dtype) for a, arr in zip(args, is_array, strict=True) if arr
    ]
    statics = [a for a, arr in zip(args, is_array, strict=True) if not arr]

    def run(v, *arrays):
        arrays, statics_left = list(arrays), list(statics)
        call_args = [arrays.pop(0) if arr else statics_left.pop(0) for arr in is_array]
        return module.apply(v, *call_args, **kwargs)

    return cost.xla_flops(jax.jit(run).lower(variables, *shapes).compile())


def summarize(model: nn.Module, input_shape: tuple[int, ...], depth: int = 1) -> list[Row]:
    """The rows of the summary for input f32[input_shape] (with a batch dimension), traced on
    flax's plain layers: every layer's arithmetic is then XLA's to count (a oneDNN custom call
    counts as none), and every Conv is called (in evaluation the oneDNN layers fold a ConvBN
    into one call)."""
    if has_field(model, "layers"):
        model = model.clone(layers="plain")
    variables = cost.variable_shapes(model, input_shape)
    fields: dict[int, Field] = {}
    keep_alive, calls, stack = [], [], []
    last = [Field()]

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not module.path:
            return next_fun(*args, **kwargs)
        field_in = fields.get(id(args[0]), last[0]) if args else last[0]
        stack.append([])
        out = next_fun(*args, **kwargs)
        inner = stack.pop()
        layer = _kernel_and_stride(module)
        if layer is not None:
            field = field_in.through(*layer)
        else:
            field = max(inner, key=lambda f: f.size) if inner else field_in
        keep_alive.append(out)
        fields[id(out)] = field
        last[0] = field
        if stack:
            stack[-1].append(field)
        calls.append((tuple(module.path), module.clone(parent=None), args, kwargs, out, field))
        return out

    def forward(v, x):
        with nn.intercept_methods(interceptor):
            return model.apply(v, x, train=False)

    jax.eval_shape(forward, variables, jax.ShapeDtypeStruct(input_shape, jnp.float32))
    rows = []
    for path, module, args, kwargs, out, field in calls:
        if len(path) > depth:
            continue
        sub = _subtree(variables, path)
        rows.append(
            Row(
                path=path,
                kind=type(module).__name__,
                output_shape=tuple(out.shape),
                params=count_params(sub.get("params", {})),
                flops=_layer_flops(module, sub, args, kwargs),
                field=field,
            )
        )
    return rows


def format_table(rows: list[Row], total_params: int, total_flops: float) -> str:
    """A plain-text table with totals; FLOPs in millions."""
    header = (
        f"{'layer':<28} {'type':<18} {'output shape':<20} {'params':>12} {'MFLOPs':>10} "
        f"{'field':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        shape = "x".join(map(str, row.output_shape))
        lines.append(
            f"{'/'.join(row.path):<28} {row.kind:<18} {shape:<20} {row.params:>12,} "
            f"{row.flops / 1e6:>10.2f} {row.field.size:>7}"
        )
    lines.append("-" * len(header))
    last_field = rows[-1].field.size if rows else 1
    lines.append(
        f"{'total':<28} {'':<18} {'':<20} {total_params:>12,} {total_flops / 1e6:>10.2f} "
        f"{last_field:>7}"
    )
    return "\n".join(lines)


def parse_input(text: str) -> tuple[int, int, int]:
    try:
        h, w, c = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(
            f"--input must look like 32x32x3 (height x width x channels), got {text!r}."
        ) from None
    return h, w, c


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("model", help="model name from jaxdl.models.names()")
    parser.add_argument("--input", default="32x32x3", help="input height x width x channels")
    parser.add_argument(
        "--num_classes",
        type=int,
        default=None,
        help="classes (default: 10 for inputs under 64 pixels, else 1000)",
    )
    parser.add_argument("--depth", type=int, default=1, help="levels of nesting to show")
    args = parser.parse_args(argv)
    h, w, c = parse_input(args.input)
    num_classes = args.num_classes or (10 if h < 64 else 1000)
    # flax's plain layers: XLA counts their arithmetic (a oneDNN custom call counts as none)
    model = models.create(args.model, num_classes=num_classes, layers="plain")
    shape = (1, h, w, c)
    rows = summarize(model, shape, args.depth)
    total_params = count_params(cost.variable_shapes(model, shape)["params"])
    print(f"{args.model}, input {h}x{w}x{c}, {num_classes} classes")
    print(format_table(rows, total_params, cost.forward_flops(model, shape)))


if __name__ == "__main__":
    cli.run(main)

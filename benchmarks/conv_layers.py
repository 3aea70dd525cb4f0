"""Every convolution of a model alone: jaxdl (XLA:CPU and oneDNN) against PyTorch, per pass.

    python -m benchmarks.conv_layers                         # resnet20, batch 128
    python -m benchmarks.conv_layers --models resnet20,resnet18_cifar --rounds 3

`benchmarks.train_throughput` says how far jaxdl's train step is from PyTorch's; this says how
much of that gap is the convolutions themselves. It traces the model (flax's plain layers, eval
mode) to list its convolutions, then times each distinct one alone, in three passes: forward,
input gradient and weight gradient. jaxdl's passes are `jax.jit` of the convolution a layer
implementation runs and its VJPs: "xla" is the fast layers' (`jaxdl.ops.fast_cpu`), "onednn"
oneDNN's first kernel for each pass (`jaxdl.ops.onednn`), "auto" the kernel the tuner picked
for it (`jaxdl.ops.onednn.tuning`, what `--layers auto` runs; both left out when the library
is not built); PyTorch's are
`torch.nn.functional.conv2d` (channels_last, no grad) and `aten.convolution_backward` asked
for one gradient at a time, float32, `--threads` threads.

Each framework runs in its own child process, the two alternating for `--rounds` rounds, so
neither's thread pool is busy (or spinning) while the other is timed; each child warms every
pass up, then times it `--repeats` times over `--calls` calls, blocked on the result. Figures are
medians over all rounds. The per-step totals weight each shape by how often the model uses it
and leave out the first convolution's input gradient (the image's, which neither framework
computes): the time a train step would take if it were nothing but its convolutions.

PyTorch is an optional benchmark dependency (`pip install torch==2.13.0`); without it the jaxdl
figures are printed alone.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import statistics
import tempfile
import time

from benchmarks.train_throughput import batch_size, child_result


def conv_layers(model_name: str, batch: int) -> list[dict]:
    """The model's 2-D convolutions in execution order, as JSON-able dicts: input shape (NHWC),
    kernel shape (HWIO), strides, padding, dilations, groups. Traced with the plain layers."""
    import jax
    import jax.extend
    import jax.numpy as jnp

    from jaxdl import models
    from jaxdl.tools.cost import variable_shapes

    model = models.create(model_name, num_classes=10, layers="plain")
    shape = (batch, 32, 32, 3)
    variables = variable_shapes(model, shape)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
        variables, jax.ShapeDtypeStruct(shape, jnp.float32)
    )
    found = []

    def walk(inner):
        for eqn in inner.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                lhs, rhs = (v.aval.shape for v in eqn.invars)
                params = eqn.params
                numbers = params["dimension_numbers"]
                if len(lhs) != 4 or tuple(numbers.lhs_spec) != (0, 3, 1, 2):
                    raise SystemExit(f"{model_name}: only 2-D NHWC convolutions are timed")
                found.append(
                    {
                        "input": list(lhs),
                        "kernel": list(rhs),
                        "strides": list(params["window_strides"]),
                        "padding": [list(p) for p in params["padding"]],
                        "lhs_dilation": list(params["lhs_dilation"]),
                        "rhs_dilation": list(params["rhs_dilation"]),
                        "groups": params["feature_group_count"],
                    }
                )
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jaxpr.jaxpr)
    if not found:
        raise SystemExit(f"{model_name} has no convolutions to time")
    return found


def uniform_padding(layer: dict) -> int | None:
    """The padding when it is the same on all four sides (as PyTorch's `padding=` takes it),
    else None."""
    (top, bottom), (left, right) = layer["padding"]
    return top if top == bottom == left == right else None


def layer_key(layer: dict) -> str:
    """A short readable name: input map and channels, kernel, stride (the timing key)."""
    _, h, w, c = layer["input"]
    kh, kw, _, cout = layer["kernel"]
    name = f"{h}x{w}x{c} -> {cout}, {kh}x{kw}/{layer['strides'][0]}"
    if layer["groups"] > 1:
        name += f", {layer['groups']} groups"
    if uniform_padding(layer) is None:
        name += f", pad {layer['padding']}"
    return name


def time_pass(run, repeats: int, calls: int) -> list[float]:
    """`repeats` timings (ms per call) of `calls` calls of `run` (which blocks), after two
    warm-up calls."""
    run()
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        times.append((time.perf_counter() - start) / calls * 1e3)
    return times


def jaxdl_passes(layer: dict, impl: str):
    """(forward, input grad, weight grad) thunks for jaxdl's convolution on `impl` ("xla",
    "onednn": oneDNN's first kernel for each pass, or "auto": the kernel the tuner picked, as
    `--layers auto` runs it), each blocking."""
    import jax
    import numpy as np

    from jaxdl.ops import fast_cpu, onednn
    from jaxdl.ops.onednn import tuning

    function = {
        "onednn": onednn.conv_general_dilated,
        "auto": tuning.conv_general_dilated,
        "xla": fast_cpu.conv_general_dilated,
    }[impl]

    def conv(x, w):
        return function(
            x,
            w,
            tuple(layer["strides"]),
            [tuple(p) for p in layer["padding"]],
            tuple(layer["lhs_dilation"]),
            tuple(layer["rhs_dilation"]),
            ("NHWC", "HWIO", "NHWC"),
            layer["groups"],
        )

    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.standard_normal(layer["input"], np.float32))
    w = jax.numpy.asarray(0.1 * rng.standard_normal(layer["kernel"], np.float32))
    dy = jax.numpy.ones_like(jax.eval_shape(conv, x, w))
    forward = jax.jit(conv)
    input_grad = jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0])
    weight_grad = jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0])
    return (
        lambda: forward(x, w).block_until_ready(),
        lambda: input_grad(x, w, dy).block_until_ready(),
        lambda: weight_grad(x, w, dy).block_until_ready(),
    )


def torch_passes(layer: dict):
    """(forward, input grad, weight grad) thunks for the same convolution in PyTorch."""
    import torch
    import torch.nn.functional as F

    n, h, w, cin = layer["input"]
    kh, kw, cin_per_group, cout = layer["kernel"]
    x = torch.randn(n, cin, h, w).contiguous(memory_format=torch.channels_last)
    padding = [uniform_padding(layer)] * 2
    if padding[0] is None:  # uneven: pad the input itself, PyTorch's padding= is per side pair
        (top, bottom), (left, right) = layer["padding"]
        x = F.pad(x, (left, right, top, bottom)).contiguous(memory_format=torch.channels_last)
        padding = [0, 0]
    weight = 0.1 * torch.randn(cout, cin_per_group, kh, kw)
    weight = weight.contiguous(memory_format=torch.channels_last)
    stride, dilation, groups = layer["strides"], layer["rhs_dilation"], layer["groups"]
    if layer["lhs_dilation"] != [1, 1]:
        raise SystemExit("input-dilated (transposed) convolutions have no PyTorch twin here")
    with torch.no_grad():
        dy = torch.ones_like(F.conv2d(x, weight, None, stride, padding, dilation, groups))

    def forward():
        with torch.no_grad():
            F.conv2d(x, weight, None, stride, padding, dilation, groups)

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(
            dy, x, weight, None, stride, padding, dilation, False, [0, 0], groups, mask
        )

    return forward, backward([True, False, False]), backward([False, True, False])


def child(framework: str, layers_file: str, repeats: int, calls: int, threads: int) -> None:
    """Times every distinct layer of `layers_file` in `framework` and prints one JSON line."""
    with open(layers_file) as f:
        layers = json.load(f)
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        build = torch_passes
    else:
        import jaxdl  # noqa: F401  (jaxdl's XLA flags, before JAX starts)

        build = functools.partial(jaxdl_passes, impl=framework)
    result = {}
    for key, layer in layers.items():
        result[key] = [time_pass(run, repeats, calls) for run in build(layer)]
    print("RESULT " + json.dumps(result), flush=True)


FRAMEWORKS = ("xla", "onednn", "auto", "torch")


def run_child(framework: str, layers_file: str, args) -> dict:
    return child_result(
        "benchmarks.conv_layers", framework, "--child", framework, "--layers_file", layers_file,
        "--repeats", str(args.repeats), "--calls", str(args.calls), "--threads", str(args.threads),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20")
    parser.add_argument("--batch_size", type=int, default=None, help="default: train_throughput's")
    parser.add_argument("--rounds", type=int, default=2, help="alternated child processes each")
    parser.add_argument("--repeats", type=int, default=5, help="timings per pass per round")
    parser.add_argument("--calls", type=int, default=5, help="calls per timing")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--layers_file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.layers_file, args.repeats, args.calls, args.threads)
        return
    for name, value in (("rounds", args.rounds), ("repeats", args.repeats), ("calls", args.calls)):
        if value < 1:
            raise SystemExit(f"--{name} {value} must be at least 1.")

    # Traced in the parent without running anything; the children only time.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from jaxdl.ops import onednn

    frameworks = ["xla"]
    print(onednn.status().line())
    if onednn.status().available:
        frameworks += ["onednn", "auto"]
    try:
        import torch

        frameworks.append("torch")
        print(
            f"torch {torch.__version__}, {args.threads} threads; each framework in its own process"
        )
    except ImportError:
        print("PyTorch is not installed: jaxdl's figures only (pip install torch==2.13.0).")

    for model_name in args.models.split(","):
        batch = args.batch_size or batch_size(model_name)
        layers = conv_layers(model_name, batch)
        counts = collections.Counter(layer_key(layer) for layer in layers)
        distinct = {layer_key(layer): layer for layer in layers}
        first = layer_key(layers[0])
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(distinct, f)
        times = {fw: collections.defaultdict(lambda: [[], [], []]) for fw in frameworks}
        try:
            for _ in range(args.rounds):
                for framework in frameworks:
                    for key, passes in run_child(framework, f.name, args).items():
                        for i, timings in enumerate(passes):
                            times[framework][key][i].extend(timings)
        finally:
            os.unlink(f.name)
        median = {
            fw: {k: [statistics.median(t) for t in v] for k, v in by_key.items()}
            for fw, by_key in times.items()
        }
        print(
            f"{model_name}, batch {batch}: {len(layers)} convolutions, {len(distinct)} shapes; "
            f"ms per call, median of {args.rounds} x {args.repeats} timings of {args.calls} calls "
            f"(forward / input grad / weight grad)"
        )
        for key in distinct:
            line = f"  {counts[key]:2d} x {key:28s}" + "".join(
                f"  {fw} " + " / ".join(f"{t:6.2f}" for t in median[fw][key]) for fw in frameworks
            )
            if "torch" in median:
                torch_ms = sum(median["torch"][key])
                line += "  " + " ".join(
                    f"{fw} {torch_ms / sum(median[fw][key]):.2f}x" for fw in frameworks[:-1]
                )
            print(line)
        totals = {}
        for framework in frameworks:
            per_key = median[framework]
            forward = sum(counts[k] * per_key[k][0] for k in distinct)
            train = sum(counts[k] * sum(per_key[k]) for k in distinct) - per_key[first][1]
            totals[framework] = (forward, train)
            print(
                f"{model_name} {framework} convolutions per step: train {train:.1f} ms "
                f"(at most {batch / train * 1e3:,.0f} img/s), eval {forward:.1f} ms "
                f"(at most {batch / forward * 1e3:,.0f} img/s)"
            )
        if "torch" in median:
            tf, tt = totals["torch"]
            for framework in frameworks[:-1]:
                jf, jt = totals[framework]
                print(
                    f"{model_name} convolutions alone: jaxdl {framework} / torch speed "
                    f"{tt / jt:.2f}x train, {tf / jf:.2f}x eval"
                )


if __name__ == "__main__":
    main()

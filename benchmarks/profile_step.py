"""Where a train (or eval) step's time goes, by op class, from a JAX profiler trace of it.

    python -m benchmarks.profile_step --model resnet20 --batch_size 128 --layers plain,fast
    python -m benchmarks.profile_step --model resnet20 --layers auto --phase eval
    python -m benchmarks.profile_step --model resnet20 --layers auto --dtype bfloat16

Compiles `jaxdl.step.train_step` (or `eval_step`, `--phase eval`) for the model, runs 10 steps,
times it (median of 5 x `--steps` steps, no profiler), traces `--steps` more steps with
`jax.profiler`, reads the trace back with `jax.profiler.ProfileData`, and sums the time of
every XLA op by class, using the optimised HLO to say what each op is: fusions that transpose
(the weight-gradient convolutions' inputs), fusions that reduce (BatchNorm statistics and
gradients, the loss), dots (BatchNorm sums on the fast path, dense layers), other fusions
(elementwise: normalise, ReLU, residual adds, optimizer update), jaxdl's custom calls by kernel
(oneDNN convolutions by pass, fused BatchNorm), copies, and the rest. XLA:CPU's trace leaves
most convolutions (Eigen kernels) out, so "convolutions and untraced" is the step time minus
every traced op. Prints one line per class (ms per step, share) and the slowest ops.
"""

from __future__ import annotations

import argparse
import collections
import functools
import re
import statistics
import tempfile
import time
from pathlib import Path


def classify_hlo(hlo_text: str) -> dict[str, str]:
    """Maps each top-level instruction name of an optimised HLO module to an op class."""
    computations: dict[str, list[str]] = {}
    current = None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            current = header.group(1)
            computations[current] = []
        elif current and line.strip() and line.strip() != "}":
            computations[current].append(line.strip())
    classes: dict[str, str] = {}
    for body in computations.values():
        for line in body:
            match = re.match(r"^(?:ROOT )?%?([\w.\-]+) = .*?\b([a-z\-]+)\(", line)
            if not match:
                continue
            name, opcode = match.groups()
            if opcode == "fusion":
                called = re.search(r"calls=%?([\w.\-]+)", line)
                inner = " ".join(computations.get(called.group(1), [])) if called else ""
                if " convolution(" in inner:
                    opcode = "convolution"
                elif " dot(" in inner:
                    opcode = "dot"
                elif " transpose(" in inner:
                    classes[name] = "fusion with transpose (weight-gradient conv inputs)"
                    continue
                elif " reduce(" in inner or " reduce-window(" in inner:
                    classes[name] = "fusion with reduction (BN stats/grads, loss, pooling)"
                    continue
                else:
                    classes[name] = "elementwise fusion (normalise, ReLU, adds, update)"
                    continue
            if opcode == "convolution":
                window = re.search(r"dim_labels=(\S+?)[,\s]", line)
                labels = window.group(1) if window else ""
                if labels.startswith("f01b") or "->01" in labels:
                    classes[name] = "convolution (weight gradient)"
                elif "rhs_reversal" in line or "lhs_dilate" in line or "_o01i" in labels:
                    classes[name] = "convolution (input gradient)"
                else:
                    classes[name] = "convolution (forward)"
            elif opcode == "custom-call":
                target = re.search(r'custom_call_target="(\w+)"', line)
                target = target.group(1) if target else ""
                if target.startswith("jaxdl_conv_"):
                    classes[name] = f"oneDNN convolution ({target[len('jaxdl_conv_') :]})"
                elif target.startswith("jaxdl_batch_norm_"):
                    kind = "backward" if "backward" in target else "forward"
                    classes[name] = f"fused BatchNorm {kind} (+ add, ReLU)"
                else:
                    classes[name] = f"other custom call ({target})"
            elif opcode in ("copy", "transpose"):
                classes[name] = "copy / transpose"
            elif opcode in ("reduce", "reduce-window", "select-and-scatter"):
                classes[name] = "fusion with reduction (BN stats/grads, loss, pooling)"
            elif opcode == "dot":
                classes[name] = "dot (fast BatchNorm sums, dense layers)"
            else:
                classes.setdefault(name, f"other ({opcode})")
    return classes


def profile(
    model_name: str, batch_size: int, steps: int, layers: str, phase: str, dtype: str = "float32"
) -> None:
    import jax

    from benchmarks.step_throughput import synthetic_state_and_batch
    from jaxdl.step import eval_step, train_step

    state, batch = synthetic_state_and_batch(model_name, batch_size, layers, dtype)
    if phase == "train":
        step = jax.jit(functools.partial(train_step, l2_weight=5e-4), donate_argnums=0)
    else:  # the state stays as it is: an evaluation returns metrics only
        step = jax.jit(lambda state, batch: (state, eval_step(state, batch)))
    compiled = step.lower(state, batch).compile()
    classes = classify_hlo(compiled.as_text())
    for _ in range(10):  # steady state: the allocator's heap grown
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)

    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, batch)
        jax.block_until_ready((state, metrics))
        times.append((time.perf_counter() - start) / steps * 1e3)
    wall = statistics.median(times)

    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(steps):
                state, metrics = compiled(state, batch)
            jax.block_until_ready((state, metrics))
        (xspace,) = Path(trace_dir).rglob("*.xplane.pb")
        trace = jax.profiler.ProfileData.from_file(str(xspace))

    per_op: collections.Counter = collections.Counter()
    for plane in trace.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in classes:
                    per_op[event.name] += event.duration_ns / 1e6 / steps
    per_class: collections.Counter = collections.Counter()
    for name, ms in per_op.items():
        per_class[classes[name]] += ms
    untraced = max(wall - sum(per_class.values()), 0.0)
    per_class["convolutions and untraced (step minus traced ops)"] += untraced
    print(
        f"{model_name} {phase} batch {batch_size}, layers {layers}, {dtype}: {wall:.0f} ms per "
        f"step ({batch_size / wall * 1e3:.0f} img/s, median of 5 x {steps} steps)"
    )
    for name, ms in per_class.most_common():
        print(f"  {name:58s} {ms:7.1f} ms  {100 * ms / wall:5.1f} %")
    print("  slowest traced ops:")
    for name, ms in per_op.most_common(5):
        print(f"    {name:38s} {ms:6.1f} ms  {classes[name]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--layers", default="plain,fast", help="comma-separated: auto, onednn, fast, plain"
    )
    parser.add_argument("--phase", choices=("train", "eval"), default="train")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()

    import jaxdl  # noqa: F401  (jaxdl's XLA flags, before JAX starts)

    for layers in args.layers.split(","):
        profile(args.model, args.batch_size, args.steps, layers, args.phase, args.dtype)


if __name__ == "__main__":
    main()

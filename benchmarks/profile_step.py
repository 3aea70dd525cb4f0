"""Where a train step's time goes, by op class, from a JAX profiler trace of the compiled step.

    python -m benchmarks.profile_step --model resnet20 --batch_size 128

Compiles `jaxdl.step.train_step` for the model, traces `--steps` steps with `jax.profiler`,
reads the trace back with `jax.profiler.ProfileData`, and sums the time of every XLA op by
class, using the optimised HLO to say what each op is: convolutions (forward, input gradient,
weight gradient), fusions that reduce (BatchNorm statistics and gradients, the loss), other
fusions (elementwise: normalise, ReLU, residual adds, optimizer update), copies and transposes,
and the rest. Prints one line per class (ms per step and share) and the ten slowest ops.
"""

from __future__ import annotations

import argparse
import collections
import functools
import re
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
            elif opcode in ("copy", "transpose"):
                classes[name] = "copy / transpose"
            elif opcode in ("reduce", "reduce-window", "select-and-scatter"):
                classes[name] = "fusion with reduction (BN stats/grads, loss, pooling)"
            elif opcode == "dot":
                classes[name] = "dot (dense layers)"
            else:
                classes.setdefault(name, f"other ({opcode})")
    return classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    import jaxdl  # noqa: F401  (jaxdl's XLA flags)
    import jax
    import jax.numpy as jnp

    from jaxdl import models
    from jaxdl.optim import OptimizerConfig, create_optimizer
    from jaxdl.state import create_train_state
    from jaxdl.step import train_step

    model = models.create(args.model, num_classes=10)
    tx, _ = create_optimizer(OptimizerConfig(name="nesterov", lr=0.1, schedule="constant"), 1, 1)
    state = create_train_state(model, tx, jax.random.PRNGKey(0), (1, 32, 32, 3))
    key = jax.random.PRNGKey(1)
    batch = {
        "image": jax.random.normal(key, (args.batch_size, 32, 32, 3)),
        "label": jax.random.randint(key, (args.batch_size,), 0, 10),
    }
    step = jax.jit(functools.partial(train_step, l2_weight=5e-4), donate_argnums=0)
    compiled = step.lower(state, batch).compile()
    classes = classify_hlo(compiled.as_text())
    for _ in range(2):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)

    with tempfile.TemporaryDirectory() as trace_dir:
        start = time.perf_counter()
        with jax.profiler.trace(trace_dir):
            for _ in range(args.steps):
                state, metrics = compiled(state, batch)
            jax.block_until_ready((state, metrics))
        wall = (time.perf_counter() - start) / args.steps
        (xspace,) = Path(trace_dir).rglob("*.xplane.pb")
        profile = jax.profiler.ProfileData.from_file(str(xspace))

    per_op: collections.Counter = collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            for event in line.events:
                name = event.name
                if name in classes:
                    per_op[name] += event.duration_ns / 1e6 / args.steps
    per_class: collections.Counter = collections.Counter()
    for name, ms in per_op.items():
        per_class[classes[name]] += ms
    total = sum(per_class.values())
    print(
        f"{args.model} batch {args.batch_size} {jnp.float32.dtype}: {wall * 1e3:.0f} ms per "
        f"step wall ({args.batch_size / wall:.0f} img/s); XLA ops account for {total:.0f} ms"
    )
    for name, ms in per_class.most_common():
        print(f"  {name:58s} {ms:7.1f} ms  {100 * ms / total:5.1f} %")
    print("slowest ops:")
    for name, ms in per_op.most_common(10):
        print(f"  {name:40s} {classes[name]:58s} {ms:6.1f} ms")


if __name__ == "__main__":
    main()

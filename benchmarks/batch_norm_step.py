"""What the fused BatchNorm kernels are worth in a whole train step: the same step with the
kernels and with XLA's BatchNorm, add and ReLU, timed alternately in one process.

    python -m benchmarks.batch_norm_step --model resnet20 --rounds 7

Both steps use the "onednn" layers (oneDNN convolutions everywhere); the second swaps
`jaxdl.nn.conv.fused_batch_norm` for "never" while its model is traced, so its BatchNorm is
`jaxdl.ops.fast_cpu.batch_norm_train` followed by XLA's add and ReLU, as on the "fast" layers.
Each round warms both up (2 steps) and times 5 steps of each; prints the median (min-max) ms
per step and img/s of both.

Timed alone, one BatchNorm's forward and backward is not what matters: XLA's fusions win some
of those in isolation, with their operands still in cache, and lose in the step, where every
activation comes from memory.
"""

from __future__ import annotations

import argparse
import functools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    import jax

    import jaxdl  # noqa: F401  (jaxdl's XLA flags and allocator, before JAX starts)
    import jaxdl.nn.conv as conv
    from benchmarks.alternate import report, time_alternately
    from benchmarks.step_throughput import synthetic_state_and_batch
    from jaxdl.step import train_step

    fused = conv.fused_batch_norm
    steps = {}
    for name, choice in (("fused kernels", fused), ("XLA BatchNorm", lambda *_: False)):
        conv.fused_batch_norm = choice
        try:
            state, batch = synthetic_state_and_batch(args.model, args.batch_size, "onednn")
            step = jax.jit(functools.partial(train_step, l2_weight=5e-4), donate_argnums=0)
            steps[name] = (step.lower(state, batch).compile(), state, batch)
        finally:
            conv.fused_batch_norm = fused
    times = time_alternately(
        {
            name: (
                lambda carry, compiled=compiled, batch=batch: compiled(carry[0], batch),
                (state, None),
            )
            for name, (compiled, state, batch) in steps.items()
        },
        args.rounds,
        args.steps,
    )
    print(f"{args.model} train step, batch {args.batch_size}, oneDNN convolutions; "
          f"{args.rounds} rounds x {args.steps} steps")  # fmt: skip
    report(times, args.batch_size, "img")


if __name__ == "__main__":
    main()

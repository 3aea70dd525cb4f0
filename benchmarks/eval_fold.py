"""What folding BatchNorm into oneDNN's convolution is worth in an evaluation step: the same
step with each ConvBN as one oneDNN call (running statistics folded into the kernel and a
bias, residual add and ReLU as post-ops) and as a convolution followed by XLA's
normalisation, add and ReLU, timed alternately in one process.

    python -m benchmarks.eval_fold --model resnet20 --rounds 7

Both use the default layers ("auto": each convolution on the kernel the tuner picked); the
second swaps `jaxdl.nn.conv.fold_batch_norm` for "never" while its model is traced. Each
round warms both up (2 steps) and times `--steps` steps of each; prints the median (min-max)
ms per step and img/s of both, and the largest difference of their logits.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--layers", default="auto")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    import jaxdl  # noqa: F401  (jaxdl's XLA flags and allocator, before JAX starts)
    import jaxdl.nn.conv as conv
    from benchmarks.alternate import report, time_alternately
    from benchmarks.step_throughput import synthetic_state_and_batch
    from jaxdl.state import model_variables
    from jaxdl.step import eval_step

    state, batch = synthetic_state_and_batch(args.model, args.batch_size, args.layers)
    fold = conv.fold_batch_norm
    steps, logits = {}, {}
    for name, choice in (("folded", fold), ("XLA BatchNorm", lambda *_: False)):
        conv.fold_batch_norm = choice
        try:
            # a fresh function per variant: jax.jit of one function shares one trace cache
            compiled = jax.jit(lambda s, b: eval_step(s, b)).lower(state, batch).compile()
            apply = jax.jit(lambda s, x: s.apply_fn(model_variables(s), x, train=False))
            logits[name] = apply.lower(state, batch["image"]).compile()(state, batch["image"])
        finally:
            conv.fold_batch_norm = fold
        steps[name] = (lambda carry, compiled=compiled: compiled(state, batch), None)
    times = time_alternately(steps, args.rounds, args.steps)
    print(f"{args.model} eval step, batch {args.batch_size}, layers {args.layers}; "
          f"{args.rounds} rounds x {args.steps} steps")  # fmt: skip
    report(times, args.batch_size, "img")
    a, b = logits.values()
    print(f"  largest logit difference: {float(jnp.max(jnp.abs(a - b))):.2e} "
          f"(largest logit {float(jnp.max(jnp.abs(b))):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()

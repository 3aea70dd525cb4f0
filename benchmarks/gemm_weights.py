"""What the gemm weight gradient (`conv_gemm.cc`: im2col + one sgemm over the batch) is worth in
a whole train step: the step with the tuner's choices, and the same step with every weight
gradient the tuner gave to "gemm" on the best of oneDNN's own kernels for it instead, timed
alternately in one process.

    python -m benchmarks.gemm_weights --model airbench94 --batch_size 1024 --rounds 3 --steps 2

Both use the default layers ("auto"); the choices come from the tuner's cache (timed on first
trace if missing) and are pinned (`jaxdl.ops.onednn.tuning.pin`) while each variant is traced.
Each round warms both up (2 steps) and times `--steps` steps of each; prints the median
(min-max) ms per step and img/s of both, and which passes differ.
"""

from __future__ import annotations

import argparse
import functools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="airbench94")
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    import jax

    import jaxdl  # noqa: F401  (jaxdl's XLA flags and allocator, before JAX starts)
    from benchmarks.alternate import report, time_alternately
    from benchmarks.step_throughput import synthetic_state_and_batch
    from jaxdl.ops.onednn import tuning
    from jaxdl.step import train_step

    state, batch = synthetic_state_and_batch(args.model, args.batch_size, "auto")
    train = functools.partial(train_step, l2_weight=5e-4)
    # a fresh function per variant: jax.jit of one function shares one trace cache
    tuned = jax.jit(lambda s, b: train(s, b)).lower(state, batch).compile()
    chosen = tuning.choices()
    timings = tuning.cached_choices()
    without = {}
    for key, passes in chosen.items():
        without[key] = dict(passes)
        if passes.get("backward_weights") == "gemm":
            timed = timings[key]["ms"]["backward_weights"]
            onednn_only = {k: v for k, v in timed.items() if k.startswith("onednn")}
            without[key]["backward_weights"] = min(onednn_only, key=onednn_only.get)
            best = min(onednn_only.values())
            print(f"  {key}: gemm {timed['gemm']:.1f} ms, oneDNN's best {best:.1f}")
    tuning.forget()
    tuning.pin(without)
    try:
        plain = jax.jit(lambda s, b: train(s, b)).lower(state, batch).compile()
    finally:
        tuning.forget()
    steps = {
        "tuned (gemm weight gradients)": (lambda c, f=tuned: f(c[0], batch), (state, None)),
        "oneDNN's weight gradients": (lambda c, f=plain: f(c[0], batch), (state, None)),
    }
    times = time_alternately(steps, args.rounds, args.steps)
    print(f"{args.model} train step, batch {args.batch_size}, layers auto; "
          f"{args.rounds} rounds x {args.steps} steps")  # fmt: skip
    report(times, args.batch_size, "img")


if __name__ == "__main__":
    main()

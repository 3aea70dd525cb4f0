"""What the LSTM's hand-written backward pass is worth in a training step: `char_lstm`'s step
with `jaxdl.ops.lstm.lstm_sequence` (custom VJP) and with the same forward differentiated by
JAX through its scan, timed alternately in one process.

    python -m benchmarks.lstm_step --rounds 5

The model is `char_lstm` at `experiments.char_lm`'s defaults (embedding 64, 2 x 256 LSTM,
vocabulary 107, windows of 256, batch 64), Adam, random tokens. Each round warms both up (2
steps) and times `--steps` steps of each; prints the median (min-max) ms per step and
characters a second of both.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    import jax
    import optax

    import jaxdl  # noqa: F401  (jaxdl's XLA flags and allocator, before JAX starts)
    from benchmarks.alternate import report, time_alternately
    from jaxdl import models
    from jaxdl.nn import recurrent
    from jaxdl.ops import lstm

    model = models.create("char_lstm", num_classes=107, hidden=args.hidden, num_layers=2)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (args.batch_size, args.context + 1), 0, 107)
    params = model.init(jax.random.PRNGKey(1), tokens[:, :-1])["params"]
    tx = optax.adam(2e-3)

    def step(params, opt_state, tokens):
        def loss(params):
            logits = model.apply({"params": params}, tokens[:, :-1])
            labels = tokens[:, 1:]
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    steps = {}
    for name, sequence in (
        ("custom backward", lstm.lstm_sequence),
        ("scan autodiff", lstm.lstm_sequence_autodiff),
    ):
        recurrent.lstm_sequence = sequence  # read by the layer while the step is traced
        try:
            state = (params, tx.init(params))
            # a fresh function per form: jax.jit caches traces per function, not per form
            fresh = jax.jit(lambda *args: step(*args))  # noqa: B023
            steps[name] = (fresh.lower(*state, tokens).compile(), state)
        finally:
            recurrent.lstm_sequence = lstm.lstm_sequence
    times = time_alternately(
        {
            name: (lambda carry, compiled=compiled: compiled(*carry[:2], tokens), (*start, None))
            for name, (compiled, start) in steps.items()
        },
        args.rounds,
        args.steps,
    )
    print(f"char_lstm train step, 2 x {args.hidden} LSTM, batch {args.batch_size} x "
          f"{args.context} characters; {args.rounds} rounds x {args.steps} steps")  # fmt: skip
    report(times, args.batch_size * args.context, "characters")


if __name__ == "__main__":
    main()

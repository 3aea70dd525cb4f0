"""Does the input pipeline slow training down? The experiment's step fed by its own pipeline
against the same step fed one fixed batch, timed alternately in one process.

    python -m benchmarks.input_pipeline --model resnet20 --batch_size 128

Both sides run the compiled step `jaxdl.train` runs (`parallel.create_runner("single")`: Nesterov
SGD, L2 weight decay, label smoothing, donated state). "pipeline" draws each batch the way an
epoch of `experiments.cifar_resnet` does (`jaxdl.data.device.train_batches` on real CIFAR-10 held
on the device: shuffled rows gathered, padded, randomly cropped and flipped, normalised, all
jitted); "fixed batch" reuses one batch that is already on the device. Each repeat times
`--steps` steps of each with `block_until_ready`; printed: median and min–max img/s of both and
the ratio of the medians (an experiment should stay within 10 % of the pure step).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train_limit", type=int, default=10_000, help="images held on device")
    parser.add_argument("--data_dir", default=None, help="TFDS data (default: $TFDS_DATA_DIR)")
    args = parser.parse_args(argv)

    import jax

    from benchmarks.step_throughput import synthetic_state_and_batch
    from jaxdl import data, parallel
    from jaxdl.data.device import train_batches

    train = data.load("cifar10", "train", args.data_dir, limit=args.train_limit)
    mean, std = data.channel_stats(train.images)
    preprocess = data.Preprocess(mean, std, data.Augmentation(crop_padding=4, flip=True))
    device_data = data.to_device(train)
    state, _ = synthetic_state_and_batch(args.model, args.batch_size)
    runner = parallel.create_runner("single", l2_weight=5e-4, label_smoothing=0.1)
    state = runner.put_state(state)

    def pipeline_batches():
        for epoch in itertools.count(1):
            yield from train_batches(
                device_data, jax.random.PRNGKey(epoch), args.batch_size, preprocess
            )

    stream = pipeline_batches()
    fixed = next(stream)
    start = time.perf_counter()
    state, metrics = runner.train(state, fixed)  # compiles the step
    jax.block_until_ready((state, metrics))
    for _ in range(2):  # warm-up, and the pipeline's own jitted pieces compile
        state, metrics = runner.train(state, next(stream))
    jax.block_until_ready((state, metrics))
    compile_seconds = time.perf_counter() - start

    def timed(feed) -> float:
        nonlocal state
        begin = time.perf_counter()
        for _ in range(args.steps):
            state, out = runner.train(state, feed())
        jax.block_until_ready((state, out))
        return args.steps * args.batch_size / (time.perf_counter() - begin)

    rates: dict[str, list[float]] = {"pipeline": [], "fixed batch": []}
    for _ in range(args.repeats):
        rates["pipeline"].append(timed(lambda: next(stream)))
        rates["fixed batch"].append(timed(lambda: fixed))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        print(
            f"{args.model} batch {args.batch_size}, {name}: {medians[name]:,.0f} img/s "
            f"({min(values):,.0f}–{max(values):,.0f}, {args.repeats} x {args.steps} steps)"
        )
    ratio = medians["pipeline"] / medians["fixed batch"]
    print(f"pipeline / fixed batch: {ratio:.3f} (compile and warm-up {compile_seconds:.1f} s)")
    return {"rates": rates, "ratio": ratio, "compile_seconds": compile_seconds}


if __name__ == "__main__":
    main()

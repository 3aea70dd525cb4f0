"""airbench94, the fastest known CIFAR-10 recipe: `python -m experiments.cifar_speedrun`.

Keller Jordan's airbench94 (94 % in 3.29 s on an A100, on the lossless CIFAR-10): a small
VGG-like net (`airbench94`) whose first layer whitens 2x2 patches with weights computed from
5,000 training images and then frozen, dirac-initialised convolutions, Nesterov SGD with
parameter groups (BatchNorm biases 64x faster), label smoothing 0.2, a triangular learning
rate, a lookahead average every 5 steps, alternating flips and 2-pixel translations, 9.9
epochs of batch 1024 on all 50,000 training images, and flip + shift test-time augmentation.
The pieces are pure functions in `jaxdl.recipes.airbench94`; the training runs through the one
loop (`jaxdl.recipes.speedrun`), each seed writing its `metrics.jsonl` below `--workdir`.

Each seed prints its test accuracy (plain and with TTA), training time (compile excluded, and
reported apart); the end prints the mean and spread over `--seeds` runs and writes
`results.json`.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics

import jax
import jax.numpy as jnp

from jaxdl import cli, data, models
from jaxdl.data.device import DeviceDataset, eval_batches
from jaxdl.errors import ConfigError
from jaxdl.loop import log
from jaxdl.recipes import airbench94, speedrun
from jaxdl.rundir import RunDir


def hit_counters(model) -> dict:
    """{"plain", "tta"}: jitted (variables, masked batch) -> number of correct predictions of
    `model` in inference mode, without and with airbench's TTA. Built once for all seeds: they
    take the variables rather than the train state (whose optimizer differs per seed), so every
    seed after the first reuses the compiled programs."""
    logits = lambda variables, images: model.apply(variables, images, train=False)
    hits = lambda out, batch: jnp.sum((jnp.argmax(out, -1) == batch["label"]) * batch["mask"])
    return {
        "plain": jax.jit(lambda v, b: hits(logits(v, b["image"]), b)),
        "tta": jax.jit(
            lambda v, b: hits(airbench94.tta_logits(functools.partial(logits, v), b["image"]), b)
        ),
    }


def accuracy(count_hits, state, test: DeviceDataset, preprocess: data.Preprocess) -> float:
    """Accuracy over every test image, `count_hits` one of `hit_counters`' functions."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    batches = eval_batches(test, 2000, preprocess)
    return float(sum(count_hits(variables, b) for b in batches)) / len(test)


def run_seed(seed: int, model, counters: dict, train, test, recipe, workdir: str, quiet: bool):
    result, preprocess = speedrun.train(
        model, recipe, train, seed, os.path.join(workdir, f"seed{seed}"), quiet
    )
    test_data = data.to_device(test)
    plain = accuracy(counters["plain"], result.state, test_data, preprocess)
    tta = accuracy(counters["tta"], result.state, test_data, preprocess)
    steps = result.history[-1]["step"]
    summary = {
        "seed": seed,
        "test_accuracy": plain,
        "test_accuracy_tta": tta,
        "train_seconds": result.train_seconds,
        "compile_seconds": result.compile_seconds,
        "steps": steps,
        "images_per_second": steps * recipe.batch_size / result.train_seconds,
        "last_epoch_train_loss": result.history[-1]["train_loss"],
    }
    log(
        f"seed {seed}: test accuracy {100 * plain:.2f} % ({100 * tta:.2f} % with TTA); "
        f"{steps} steps in {result.train_seconds:.1f} s "
        f"({summary['images_per_second']:.0f} img/s, +{result.compile_seconds:.1f} s compile)"
    )
    return summary


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter
    )
    recipe = airbench94.Recipe()
    result.add_argument("--seeds", type=int, default=3, help="runs, seeds 0 .. seeds-1")
    result.add_argument("--epochs", type=float, default=recipe.epochs, help="training epochs")
    result.add_argument("--batch_size", type=int, default=recipe.batch_size, help="batch size")
    result.add_argument("--data_dir", default=None, help="TFDS data (default: $TFDS_DATA_DIR)")
    result.add_argument("--train_limit", type=int, default=None, help="first N training images")
    result.add_argument("--test_limit", type=int, default=None, help="first N test images")
    result.add_argument(
        "--workdir", default="runs/cifar_speedrun", help="run directory (results, metrics)"
    )
    result.add_argument("--quiet", action="store_true", help="no progress bar")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds} must be at least 1.")
    if not args.epochs > 0:
        raise ConfigError(f"--epochs {args.epochs} must be a positive number of epochs.")
    recipe = airbench94.Recipe(epochs=args.epochs, batch_size=args.batch_size)
    train = data.load("cifar10", "train", args.data_dir, limit=args.train_limit)
    test = data.load("cifar10", "test", args.data_dir, limit=args.test_limit)
    data.steps_per_epoch(len(train), recipe.batch_size)  # a batch larger than the data stops here
    log(
        f"cifar10: {len(train):,} train / {len(test):,} test images; airbench94, "
        f"{recipe.epochs} epochs of batch {recipe.batch_size}, {args.seeds} seeds"
    )
    model = models.create("airbench94", num_classes=train.num_classes)
    counters = hit_counters(model)
    runs = [
        run_seed(seed, model, counters, train, test, recipe, args.workdir, args.quiet)
        for seed in range(args.seeds)
    ]
    summary = {}
    for name in ("test_accuracy", "test_accuracy_tta", "train_seconds", "compile_seconds"):
        values = [run[name] for run in runs]
        summary[name] = {
            "mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    RunDir(args.workdir).write_results({"runs": runs, "summary": summary})
    acc, tta, seconds = (
        summary[k] for k in ("test_accuracy", "test_accuracy_tta", "train_seconds")
    )
    log(
        f"{args.seeds} seeds: test accuracy {100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} %, "
        f"with TTA {100 * tta['mean']:.2f} ± {100 * tta['std']:.2f} %; training "
        f"{seconds['mean']:.1f} ± {seconds['std']:.1f} s (compile "
        f"{summary['compile_seconds']['mean']:.1f} s, apart)"
    )
    return {"runs": runs, "summary": summary, "mean_test_accuracy_tta": tta["mean"]}


if __name__ == "__main__":
    cli.run(main)

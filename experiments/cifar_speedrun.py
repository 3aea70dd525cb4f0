"""airbench94, the fastest known CIFAR-10 recipe: `python -m experiments.cifar_speedrun`.

Keller Jordan's airbench94 (94 % in 3.29 s on an A100, on the lossless CIFAR-10): a small
VGG-like net (`airbench94`) whose first layer whitens 2x2 patches with weights computed from
5,000 training images and then frozen, dirac-initialised convolutions, Nesterov SGD with
parameter groups (BatchNorm biases 64x faster), label smoothing 0.2, a triangular learning
rate, a lookahead average every 5 steps, alternating flips and 2-pixel translations, 9.9
epochs of batch 1024 on all 50,000 training images, and flip + shift test-time augmentation.
The pieces are pure functions in `jaxdl.airbench`; the step is `jaxdl.step.train_step`, compiled
twice: after the whitening bias stops training, a step that skips the gradient below the first
conv group (as PyTorch skips it for parameters without `requires_grad`).

Each seed prints its test accuracy (plain and with TTA), training time (compile excluded, and
reported apart); the end prints the mean and spread over `--seeds` runs and writes
`results.json`.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from jaxdl import airbench, cli, data, models
from jaxdl.data.device import DeviceDataset, eval_batches
from jaxdl.errors import ConfigError
from jaxdl.loop import log
from jaxdl.state import create_train_state
from jaxdl.step import train_step


@jax.jit
def gather(images, labels, rows):
    return {"image": images[rows], "label": labels[rows]}


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
            lambda v, b: hits(airbench.tta_logits(functools.partial(logits, v), b["image"]), b)
        ),
    }


def accuracy(count_hits, state, test: DeviceDataset, preprocess: data.Preprocess) -> float:
    """Accuracy over every test image, `count_hits` one of `hit_counters`' functions."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    batches = eval_batches(test, 2000, preprocess)
    return float(sum(count_hits(variables, b) for b in batches)) / len(test)


def run_seed(
    seed: int, model, counters: dict, train, test, recipe: airbench.Recipe, quiet: bool
) -> dict:
    mean, std = data.channel_stats(train.images)
    preprocess = data.Preprocess(mean, std)
    train_images = jax.jit(data.normalize, static_argnums=(1, 2))(train.images, mean, std)
    train_labels = jnp.asarray(train.labels)
    key = jax.random.PRNGKey(seed)
    init_key, flip_key, data_key = jax.random.split(key, 3)

    n = len(train.labels)
    steps_per_epoch = n // recipe.batch_size
    total_steps = math.ceil(steps_per_epoch * recipe.epochs)
    tx = airbench.optimizer(recipe, steps_per_epoch, total_steps)
    state = create_train_state(model, tx, init_key, (1, *train.image_shape))
    params = dict(state.params)
    params["whiten"] = {
        "conv": {
            "kernel": airbench.whitening_kernel(train_images[:5000]),
            "bias": params["whiten"]["conv"]["bias"],
        }
    }
    state = state.replace(params=params, opt_state=tx.init(params))
    padded = airbench.prepare_train_images(flip_key, train_images, recipe.translate)

    # Two steps, compiled up front: once the whitening bias stops training (epoch
    # `whiten_bias_epochs`), the frozen model's step skips the gradient below the first group.
    frozen_model = model.clone(freeze_whitening=True)
    variants = {False: state, True: state.replace(apply_fn=frozen_model.apply)}
    start = time.perf_counter()
    step_fn = jax.jit(
        functools.partial(train_step, label_smoothing=recipe.label_smoothing), donate_argnums=0
    )
    sample = gather(train_images, train_labels, jnp.arange(recipe.batch_size))
    steps = {frozen: step_fn.lower(s, sample).compile() for frozen, s in variants.items()}
    jax.block_until_ready(airbench.epoch_images(data_key, padded, 0, recipe.translate))
    for variant in variants.values():
        warm = jax.tree.map(jnp.copy, (state.params, state.batch_stats))
        jax.block_until_ready(airbench.lookahead(jax.tree.map(jnp.copy, variant), warm, 0.5))
    compile_seconds = time.perf_counter() - start

    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=f"seed {seed}", unit="step", disable=quiet, leave=False)
    done, average = 0, None
    for epoch in range(math.ceil(recipe.epochs)):
        frozen = epoch >= recipe.whiten_bias_epochs
        step = steps[frozen]
        if frozen:
            state = state.replace(apply_fn=frozen_model.apply)
        epoch_key, order_key = jax.random.split(jax.random.fold_in(data_key, epoch))
        images = airbench.epoch_images(epoch_key, padded, epoch, recipe.translate)
        order = jax.random.permutation(order_key, n)
        for index in range(steps_per_epoch):
            rows = order[index * recipe.batch_size : (index + 1) * recipe.batch_size]
            state, metrics = step(state, gather(images, train_labels, rows))
            done += 1
            bar.update()
            if epoch >= recipe.lookahead_start_epoch and done % recipe.lookahead_every == 0:
                if average is None:
                    # A copy: the step donates the state's buffers.
                    average = jax.tree.map(jnp.copy, (state.params, state.batch_stats))
                else:
                    decay = airbench.lookahead_decay(done, total_steps)
                    state, average = airbench.lookahead(state, average, decay)
            if done >= total_steps:
                break
        if average is not None and (recipe.lookahead_epoch_sync or done >= total_steps):
            state, average = airbench.lookahead(state, average, 1.0)  # end on the average
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - start
    bar.close()

    test_data = data.to_device(test)
    plain = accuracy(counters["plain"], state, test_data, preprocess)
    tta = accuracy(counters["tta"], state, test_data, preprocess)
    result = {
        "seed": seed,
        "test_accuracy": plain,
        "test_accuracy_tta": tta,
        "train_seconds": train_seconds,
        "compile_seconds": compile_seconds,
        "steps": done,
        "images_per_second": done * recipe.batch_size / train_seconds,
        "final_train_loss": float(metrics["loss"]),
    }
    log(
        f"seed {seed}: test accuracy {100 * plain:.2f} % ({100 * tta:.2f} % with TTA); "
        f"{done} steps in {train_seconds:.1f} s ({result['images_per_second']:.0f} img/s, "
        f"+{compile_seconds:.1f} s compile)"
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    recipe = airbench.Recipe()
    parser.add_argument("--seeds", type=int, default=3, help="runs, seeds 0 .. seeds-1")
    parser.add_argument("--epochs", type=float, default=recipe.epochs, help="training epochs")
    parser.add_argument("--batch_size", type=int, default=recipe.batch_size)
    parser.add_argument(
        "--lookahead_start_epoch", type=int, default=recipe.lookahead_start_epoch,
        help="epoch whose first lookahead update starts the average",
    )  # fmt: skip
    parser.add_argument(
        "--lookahead_epoch_sync", action="store_true",
        help="end every epoch on the lookahead average (the first airbench94), not only the last",
    )  # fmt: skip
    parser.add_argument("--data_dir", default=None, help="TFDS data (default: $TFDS_DATA_DIR)")
    parser.add_argument("--train_limit", type=int, default=None, help="first N training images")
    parser.add_argument("--test_limit", type=int, default=None, help="first N test images")
    parser.add_argument("--workdir", default="runs/cifar_speedrun", help="where results.json goes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds} must be at least 1.")
    recipe = airbench.Recipe(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lookahead_start_epoch=args.lookahead_start_epoch,
        lookahead_epoch_sync=args.lookahead_epoch_sync,
    )
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
        run_seed(seed, model, counters, train, test, recipe, args.quiet)
        for seed in range(args.seeds)
    ]
    summary = {}
    for name in ("test_accuracy", "test_accuracy_tta", "train_seconds", "compile_seconds"):
        values = [run[name] for run in runs]
        summary[name] = {
            "mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump({"runs": runs, "summary": summary}, f, indent=2)
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

"""Segmenting digits with a fully convolutional net: `python -m experiments.segmentation`.

Canvases of `--canvas` x `--canvas` pixels, each holding `--digits` real MNIST digits at random
places, with a per-pixel mask: background or the digit's class (11 classes). Training canvases
are made from MNIST's training digits, the held-out ones from its test digits. The model is
jaxdl's `fcn` (a ResNet trunk whose stages are scored by 1x1 convolutions and upsampled back to
the input size: no dense layer), trained with the same `train_step` as every classifier:
the cross-entropy simply runs over pixels.

Prints pixel accuracy and mean intersection-over-union (IoU) over the 11 classes on the
held-out canvases, per-class IoU, and writes `plots/segmentation.png` (image, true and
predicted masks), `plots/curves.png` and `results.json` to the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax.numpy as jnp
import numpy as np

from jaxdl import cli, data, parallel, viz
from jaxdl.data.compose import compose_digits
from jaxdl.loop import evaluate, fit, log
from jaxdl.metrics import confusion_matrix, intersection_over_union
from jaxdl.report import class_probabilities
from jaxdl.train import TrainConfig, initial_state

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="fcn",
    model_options={"stage_sizes": (1, 1, 1, 1), "widths": (16, 32, 64, 128)},
    epochs=6,
    batch_size=64,
    lr=2e-3,
    optimizer="adam",
    schedule="warmup_cosine",
    workdir="runs/segmentation",
)


def main(argv: list[str] | None = None) -> dict:
    parser = cli.parser(__doc__.splitlines()[0], DEFAULTS)
    parser.add_argument("--canvas", type=int, default=48, help="canvas height and width")
    parser.add_argument("--digits", type=int, default=2, help="digits per canvas")
    parser.add_argument("--train_canvases", type=int, default=12000, help="training canvases")
    parser.add_argument("--test_canvases", type=int, default=2000, help="held-out canvases")
    args = parser.parse_args(argv)
    options = DEFAULTS.model_options if args.model == DEFAULTS.model else {}
    config = cli.config_from_args(args, DEFAULTS, model_options=options)
    config.validate()
    start = time.perf_counter()

    digits = {
        split: data.load("mnist", split, config.data_dir, limit=limit)
        for split, limit in (("train", config.train_limit), ("test", config.test_limit))
    }
    class_names = ("background", *digits["train"].class_names)
    make = lambda split, count, seed: compose_digits(
        digits[split].images, digits[split].labels, count, args.canvas, args.digits, seed=seed
    )
    train_images, train_masks = make("train", args.train_canvases, config.seed)
    test_images, test_masks = make("test", args.test_canvases, config.seed + 1)
    val_size = min(config.val_size, args.train_canvases // 10)
    train = data.DeviceDataset(
        jnp.asarray(train_images[val_size:]), jnp.asarray(train_masks[val_size:])
    )
    val = data.DeviceDataset(
        jnp.asarray(train_images[:val_size]), jnp.asarray(train_masks[:val_size])
    )
    test = data.DeviceDataset(jnp.asarray(test_images), jnp.asarray(test_masks))
    log(
        f"{len(train):,} train / {len(val):,} validation canvases from MNIST's training digits, "
        f"{len(test):,} held-out canvases from its test digits; {args.canvas}x{args.canvas}, "
        f"{args.digits} digits each, {100 * np.mean(train_masks != 0):.1f} % digit pixels"
    )
    mean, std = data.channel_stats(train_images)
    preprocess = data.Preprocess(mean, std)  # no crop or flip: the mask would have to follow

    steps = data.steps_per_epoch(len(train), config.batch_size)
    state, learning_rate_fn, data_key = initial_state(
        config, len(class_names), train_images.shape[1:], steps
    )
    runner = parallel.create_runner(config.parallel)
    os.makedirs(config.workdir, exist_ok=True)
    with open(os.path.join(config.workdir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config) | vars(args), f, indent=2, default=str)
    result = fit(
        runner.put_state(state),
        train_fn=runner.train,
        eval_fn=runner.evaluate,
        local_state=runner.local_state,
        train_data=train,
        val_data=val,
        preprocess=preprocess,
        batch_size=config.batch_size,
        epochs=config.epochs,
        key=data_key,
        workdir=config.workdir,
        learning_rate_fn=learning_rate_fn,
        eval_batch_size=200,
        quiet=config.quiet,
    )
    final = runner.local_state(result.state)
    pixel = evaluate(runner.evaluate, result.state, test, 200, preprocess)
    predicted = class_probabilities(final, test, preprocess, 200).argmax(-1)
    iou = intersection_over_union(
        confusion_matrix(predicted.ravel(), test_masks.ravel(), len(class_names))
    )
    mean_iou = float(np.nanmean(iou))
    for name, value in zip(class_names, iou, strict=True):
        log(f"  IoU {name:>10}: {100 * value:5.1f} %")
    shown = slice(0, 6)
    viz.plot_segmentation(
        test_images[shown],
        test_masks[shown],
        predicted[shown],
        class_names,
        os.path.join(config.workdir, "plots", "segmentation.png"),
    )
    viz.plot_curves({"run": result.history}, os.path.join(config.workdir, "plots", "curves.png"))
    results = {
        "test_pixel_accuracy": pixel["accuracy"],
        "test_mean_iou": mean_iou,
        "test_iou_per_class": dict(zip(class_names, map(float, iou), strict=True)),
        "train_seconds": result.train_seconds,
        "compile_seconds": result.compile_seconds,
        "wall_seconds": time.perf_counter() - start,
    }
    with open(os.path.join(config.workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    log(
        f"trained {len(result.history)} epochs in {result.train_seconds:.1f} s; wall time "
        f"{results['wall_seconds']:.1f} s; run directory {os.path.abspath(config.workdir)}"
    )
    log(
        f"held-out pixel accuracy: {100 * pixel['accuracy']:.2f} %; "
        f"mean IoU over {len(class_names)} classes: {100 * mean_iou:.2f} %"
    )
    return results


if __name__ == "__main__":
    cli.run(main)

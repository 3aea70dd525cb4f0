"""Segmenting digits with a fully convolutional net: `python -m experiments.segmentation`.

Canvases of `--canvas` x `--canvas` pixels, each holding `--digits` real MNIST digits at random
places, with a per-pixel mask: background or the digit's class (11 classes). Training canvases
are made from MNIST's training digits, the held-out ones from its test digits. The model is
jaxdl's `fcn` (a ResNet trunk whose stages are scored by 1x1 convolutions and upsampled back to
the input size: no dense layer), trained with the same `train_step` as every classifier:
the cross-entropy simply runs over pixels (`jaxdl.tasks.segmentation`). `--dilated_stages N`
keeps the last N stages at the resolution before them, with dilated convolutions instead of
strides (DeepLab's atrous convolution).

Prints pixel accuracy and mean intersection-over-union (IoU) over the 11 classes on the
held-out canvases, per-class IoU, and writes `plots/segmentation.png` (image, true and
predicted masks), `plots/curves.png` and `results.json` to the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.tasks.segmentation import Segmentation
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="fcn",
    model_options={"stage_sizes": (1, 1, 1, 1), "widths": (16, 32, 64, 128)},
    epochs=6,
    batch_size=64,
    eval_batch_size=200,
    lr=2e-3,
    optimizer="adam",
    schedule="warmup_cosine",
    workdir="runs/segmentation",
)


def parser() -> argparse.ArgumentParser:
    task = Segmentation()
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude=Segmentation.unsupported)
    result.add_argument("--canvas", type=int, default=task.canvas, help="canvas height and width")
    result.add_argument("--digits", type=int, default=task.digits, help="digits per canvas")
    result.add_argument(
        "--train_canvases", type=int, default=task.train_canvases, help="training canvases"
    )
    result.add_argument(
        "--test_canvases", type=int, default=task.test_canvases, help="held-out canvases"
    )
    result.add_argument(
        "--dilated_stages",
        type=int,
        default=0,
        help="the last N stages dilated (2, 4, ...) instead of strided, as DeepLab",
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    config = cli.config_from_args(args, DEFAULTS)
    if args.dilated_stages:
        options = config.model_options | {"dilated_stages": args.dilated_stages}
        config = dataclasses.replace(config, model_options=options)
    task = Segmentation(args.canvas, args.digits, args.train_canvases, args.test_canvases)
    return train_and_evaluate(config, task)


if __name__ == "__main__":
    cli.run(main)

"""ResNet on CIFAR-10: `python -m experiments.cifar_resnet`.

Defaults: ResNet-20 (He et al. 2016, option-A shortcuts), SGD with Nesterov momentum 0.9,
peak learning rate 0.1 at batch 64 with one warm-up epoch and cosine decay, weight decay 5e-4
(L2), label smoothing 0.1, random crop with 4-pixel padding and horizontal flips. The number of
epochs is fitted to an 85-minute budget for the epochs (`--time_budget_minutes`; at most
`--epochs` 90): a few of the run's own steps are timed before training and the cosine schedule
is laid out over as many epochs as fit, then re-planned once a tenth of the way in from the
epochs' own times, so the whole run ends inside 90 minutes on whichever CPU it gets (our 2-core
machines differ 1.7x in speed: on XLA's convolutions ~30 epochs on the slower, ~55 on the
faster; on oneDNN's kernels an AVX2-only EPYC plans 57 (521 img/s), BENCHMARKS.md).
`--time_budget_minutes 0` trains exactly `--epochs`. A seeded 45,000 / 5,000 train /
validation split; the 10,000 test images are used once, for the final number (plain and with
flip test-time augmentation).

`--recipe he2016` sets the paper's schedule for machines with an accelerator: 182 epochs,
momentum 0.9 (not Nesterov), learning rate 0.1 divided by 10 at epochs 91 and 136, weight
decay 1e-4, no label smoothing, no time budget (91.25 % for ResNet-20 on the lossless original
CIFAR-10).
"""

from __future__ import annotations

import argparse
import dataclasses

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="cifar10",
    model="resnet20",
    epochs=90,
    time_budget_minutes=85.0,
    batch_size=64,
    lr=0.1,
    optimizer="nesterov",
    schedule="warmup_cosine",
    warmup_epochs=1.0,
    weight_decay=5e-4,
    label_smoothing=0.1,
    val_size=5000,
    crop_padding=4,
    flip=True,
    flip_tta=True,
    workdir="runs/cifar_resnet",
)

RECIPES = {
    "he2016": {
        "epochs": 182,
        "time_budget_minutes": 0.0,
        "optimizer": "momentum",
        "schedule": "step",
        "lr": 0.1,
        "weight_decay": 1e-4,
        "label_smoothing": 0.0,
    },
}


def parser() -> argparse.ArgumentParser:
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS)
    result.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=None,
        help="a published recipe; it replaces the defaults of the options it sets "
        "(he2016: " + ", ".join(f"{k}={v}" for k, v in RECIPES["he2016"].items()) + ")",
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    options = parser()
    args = options.parse_args(argv)
    defaults = dataclasses.replace(DEFAULTS, **RECIPES[args.recipe]) if args.recipe else DEFAULTS
    if args.recipe:
        # Options the user typed still win over the recipe.
        options.set_defaults(**RECIPES[args.recipe])
        args = options.parse_args(argv)
    return train_and_evaluate(cli.config_from_args(args, defaults))


if __name__ == "__main__":
    cli.run(main)

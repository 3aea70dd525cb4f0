"""LeNet-5 on MNIST: `python -m experiments.lenet_mnist`.

LeCun et al.'s 6-16-120-84-10 network (61,706 parameters) with ReLU and max pooling
(`--act tanh --pool avg` gives the 1998 form), Adam with warm-up + cosine, and a random
2-pixel shift (crop after padding) as augmentation; no flips, digits are not symmetric.
See the README for the measured test accuracy (the target is at least 99.0 %).
"""

from __future__ import annotations

import argparse

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="lenet5",
    epochs=15,
    batch_size=128,
    lr=2e-3,
    optimizer="adam",
    schedule="warmup_cosine",
    crop_padding=2,
    workdir="runs/lenet_mnist",
)


def parser() -> argparse.ArgumentParser:
    # LeNet-5's experiment: the model is not an option, its activation and pooling are
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude={"model"})
    result.add_argument("--act", default="relu", choices=("relu", "tanh"), help="activation")
    result.add_argument("--pool", default="max", choices=("max", "avg"), help="pooling")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    options = {"act": args.act, "pool": args.pool}
    return train_and_evaluate(cli.config_from_args(args, DEFAULTS, model_options=options))


if __name__ == "__main__":
    cli.run(main)

"""Softmax (multinomial logistic) regression on MNIST: `python -m experiments.softmax_regression`.

One affine layer from 784 pixels to 10 logits (7,850 parameters), softmax cross-entropy,
plain SGD with momentum; the known figure for this linear model is about 92 % test accuracy.
See the README for the measured number.
"""

from __future__ import annotations

import argparse

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="softmax_regression",
    epochs=10,
    batch_size=128,
    lr=0.05,
    optimizer="momentum",
    schedule="warmup_cosine",
    workdir="runs/softmax_regression",
)


def parser() -> argparse.ArgumentParser:
    return cli.parser(__doc__.splitlines()[0], DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    return train_and_evaluate(cli.config_from_args(args, DEFAULTS))


if __name__ == "__main__":
    cli.run(main)

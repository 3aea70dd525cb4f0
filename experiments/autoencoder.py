"""A convolutional autoencoder on MNIST, against PCA: `python -m experiments.autoencoder`.

`conv_autoencoder` squeezes each digit through a `--code`-dimensional code (two stride-2
convolutions down, two transposed convolutions up, a sigmoid at the end) and is trained on
mean squared error, with digit `--anomaly_digit` held out of its training and validation
images (-1: none). On the test split it reports, each beside the same figure of PCA with as
many components as the code, fitted on the same training images: the reconstruction MSE;
k-means clustering accuracy (k = 10, 10 starts, best one-to-one matching of clusters to
labels) on the codes, on raw pixels and on the PCA codes; and the AUROC of spotting
anomalies by reconstruction error, the held-out digit against the other digits and MNIST
against grey-scaled CIFAR-10 test images resized to 28x28. Plots: originals over
reconstructions, a t-SNE view of the codes, the anomaly scores' histograms. The last line is
`test reconstruction MSE: N.NNNNN`. See the README for the measured figures.
"""

from __future__ import annotations

import argparse

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.tasks.reconstruction import Autoencoding
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="conv_autoencoder",
    epochs=10,
    batch_size=128,
    eval_batch_size=1000,
    lr=2e-3,
    optimizer="adam",
    schedule="warmup_cosine",
    warmup_epochs=0.5,
    workdir="runs/autoencoder",
)


def parser() -> argparse.ArgumentParser:
    result = cli.parser(
        __doc__.splitlines()[0], DEFAULTS, exclude=Autoencoding.unsupported | {"model", "dataset"}
    )
    result.add_argument("--code", type=int, default=32, help="code dimensions (and PCA's)")
    result.add_argument("--width", type=int, default=32, help="channels of the first convolution")
    result.add_argument(
        "--anomaly_digit",
        type=int,
        default=9,
        help="digit held out of training, the anomaly to detect (-1: none)",
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    options = {"code": args.code, "width": args.width, "image_size": 28}
    config = cli.config_from_args(args, DEFAULTS, model_options=options)
    digit = None if args.anomaly_digit < 0 else args.anomaly_digit
    return train_and_evaluate(config, Autoencoding(anomaly_digit=digit))


if __name__ == "__main__":
    cli.run(main)

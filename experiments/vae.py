"""A variational autoencoder on binarised MNIST: `python -m experiments.vae`.

`vae` encodes each digit to a Gaussian over a `--latent`-dimensional latent (two stride-2
convolutions), samples it by the reparameterisation trick and decodes Bernoulli pixel
probabilities (two transposed convolutions). Training images are binarised afresh every
epoch (dynamic binarisation), validation and test images once with the seed. The loss is
the negative ELBO in nats: the reconstruction term plus the KL divergence from the standard
normal prior. On the test split it reports the negative ELBO split into its two terms and
the importance-weighted estimate of the log-likelihood from `--importance_samples` latents
per image (a tighter bound); plots: samples from the prior, a latent interpolation grid,
reconstructions, curves. The last line is `test negative ELBO: NN.NN nats`. See the README
for the measured figures.
"""

from __future__ import annotations

import argparse

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.tasks.reconstruction import VariationalAutoencoding
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="vae",
    epochs=20,
    batch_size=128,
    eval_batch_size=1000,
    lr=2e-3,
    optimizer="adam",
    schedule="warmup_cosine",
    warmup_epochs=0.5,
    workdir="runs/vae",
)


def parser() -> argparse.ArgumentParser:
    task = VariationalAutoencoding()
    result = cli.parser(
        __doc__.splitlines()[0],
        DEFAULTS,
        exclude=VariationalAutoencoding.unsupported | {"model", "dataset"},
    )
    result.add_argument("--latent", type=int, default=32, help="latent dimensions")
    result.add_argument("--width", type=int, default=32, help="channels of the first convolution")
    result.add_argument(
        "--importance_samples",
        type=int,
        default=task.importance_samples,
        help="latents per test image for the importance-weighted log-likelihood",
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    options = {"latent": args.latent, "width": args.width, "image_size": 28}
    config = cli.config_from_args(args, DEFAULTS, model_options=options)
    task = VariationalAutoencoding(importance_samples=args.importance_samples)
    return train_and_evaluate(config, task)


if __name__ == "__main__":
    cli.run(main)

"""A DCGAN on MNIST (or CIFAR-10), judged by a LeNet-5: `python -m experiments.gan`.

`dcgan`'s generator maps `--latent` normal noise through a linear layer and stride-2
transposed convolutions (BatchNorm, ReLU, tanh at the end) to an image; its discriminator
mirrors it with stride-2 convolutions and leaky ReLU and sees the batch's spread (minibatch
standard deviation); `--depth` (1) stride-1 3x3 convolutions follow every stage of both.
Both train in one pure step (`jaxdl.adversarial`): a discriminator update on a real and a
generated batch, then a generator update of the non-saturating loss, Adam (b1 = 0.5; 2e-3
decaying to 0 on a cosine over 8 epochs) for each; `--label_smoothing`
is one-sided (the real images' target). Samples come from a moving average of the
generator's weights (`--average_decay`, 0.999). After every epoch a grid of the same 64 noise
vectors goes to `plots/samples/`. The judge is a LeNet-5: `--judge RUN_DIR` reads a trained
one, else one is trained first in `WORKDIR/judge` (its training is not the GAN's). On 10,000
generated images the output gives the Inception Score under the judge, the Fréchet distance
of the judge's penultimate features to the real test images' and the judge's class
histogram, each beside the same figure for real images; the last line is `Inception Score
(LeNet judge): N.NN`. See the README for the measured figures and a sample grid.
"""

from __future__ import annotations

import argparse
import os

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.loop import log
from jaxdl.tasks.gan import GenerativeAdversarial
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="dcgan",
    epochs=8,
    batch_size=128,
    eval_batch_size=1000,
    lr=2e-3,
    optimizer="adam",
    schedule="cosine",
    workdir="runs/gan",
)
IMAGE_SIZES = {"mnist": 28, "cifar10": 32}


def parser() -> argparse.ArgumentParser:
    result = cli.parser(
        __doc__.splitlines()[0],
        DEFAULTS,
        exclude=GenerativeAdversarial.unsupported | {"model", "dataset"},
    )
    result.add_argument(
        "--dataset", default=DEFAULTS.dataset, choices=tuple(IMAGE_SIZES), help="images to imitate"
    )
    result.add_argument("--latent", type=int, default=64, help="noise dimensions")
    result.add_argument(
        "--depth",
        type=int,
        default=1,
        help="stride-1 3x3 convolutions after each stage of both networks",
    )
    result.add_argument("--width", type=int, default=64, help="generator channels (last stage)")
    result.add_argument(
        "--discriminator_width", type=int, default=64, help="discriminator channels (first stage)"
    )
    result.add_argument(
        "--average_decay",
        type=float,
        default=GenerativeAdversarial.average_decay,
        help="decay of the generator's moving average that samples are drawn from (0: off)",
    )
    result.add_argument(
        "--judge",
        metavar="RUN_DIR",
        help="a trained LeNet-5 run directory (default: train one in WORKDIR/judge first)",
    )
    return result


def judge_run(args: argparse.Namespace, config: TrainConfig) -> str:
    """The judge's run directory: `--judge`, else a LeNet-5 trained now in WORKDIR/judge (kept
    and reused when it has finished)."""
    if args.judge:
        return args.judge
    from experiments import lenet_mnist

    workdir = os.path.join(config.workdir, "judge")
    if not os.path.exists(os.path.join(workdir, "results.json")):
        log(f"training the judge, a LeNet-5 on {config.dataset}, in {workdir}")
        argv = ["--dataset", config.dataset, "--workdir", workdir, "--seed", str(config.seed)]
        argv += ["--data_dir", config.data_dir] if config.data_dir else []
        argv += ["--quiet"] if config.quiet else []
        for name in ("train_limit", "test_limit"):  # a quick GAN run gets a quick judge
            if getattr(config, name):
                argv += [f"--{name}", str(getattr(config, name))]
        lenet_mnist.main(argv)
    return workdir


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    dataset = args.dataset
    options = {
        "latent": args.latent,
        "depth": args.depth,
        "width": args.width,
        "discriminator_width": args.discriminator_width,
        "image_size": IMAGE_SIZES[dataset],
    }
    config = cli.config_from_args(args, DEFAULTS, model_options=options)
    task = GenerativeAdversarial(
        judge_dir=judge_run(args, config), average_decay=args.average_decay
    )
    return train_and_evaluate(config, task)


if __name__ == "__main__":
    cli.run(main)

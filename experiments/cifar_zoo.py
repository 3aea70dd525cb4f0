"""The CIFAR-10 zoo under one short schedule: `python -m experiments.cifar_zoo`.

VGG-11, GoogLeNet (Inception blocks), ResNet-20 and -56, WideResNet-16-4, ResNeXt,
DenseNet-BC-100 (k = 12) and SqueezeNet, each in its 32x32 CIFAR form, trained with the same
schedule (Nesterov SGD, warm-up + cosine, weight decay, crop + flip) on the same data. The
defaults (`--train_limit` 5,000 images, 2 epochs, accuracy on the first `--test_limit` 2,000
test images) make a CPU comparison of minutes per model, not the papers' accuracies: every
model is far from converged, and the ranking after a short schedule favours models that learn
fast. Raise `--epochs` and drop the limits on an accelerator.

Prints a table of test accuracy, parameters, forward GFLOPs per image (XLA cost analysis) and
training time per epoch (and images/s), and writes `results.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from jaxdl import cli, models
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError, NonFiniteError
from jaxdl.loop import log
from jaxdl.tools import cost
from jaxdl.train import train_and_evaluate

ZOO = (
    "vgg11_cifar",
    "googlenet_cifar",
    "resnet20",
    "resnet56",
    "wrn16_4",
    "resnext_cifar",
    "densenet_bc100_k12",
    "squeezenet_cifar",
)

DEFAULTS = TrainConfig(
    dataset="cifar10",
    model="resnet20",
    epochs=2,
    batch_size=128,
    lr=0.1,
    optimizer="nesterov",
    schedule="warmup_cosine",
    weight_decay=5e-4,
    crop_padding=4,
    flip=True,
    train_limit=5000,
    test_limit=2000,
    quiet=True,
    plots=False,
    workdir="runs/cifar_zoo",
)


def parser() -> argparse.ArgumentParser:
    # --models, not --model: the experiment trains several
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude={"model"})
    result.add_argument("--models", default=",".join(ZOO), help="zoo models to train")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    base = cli.config_from_args(args, DEFAULTS)
    chosen = args.models.split(",")
    unknown = [name for name in chosen if name not in models.names()]
    if unknown:
        raise ConfigError(f"unknown --models {', '.join(unknown)}; see jaxdl.models.names().")
    start = time.perf_counter()
    rows = []
    for name in chosen:
        config = dataclasses.replace(base, model=name, workdir=os.path.join(base.workdir, name))
        model = models.create(name, num_classes=10)
        flops = cost.forward_flops(model, (1, 32, 32, 3))
        parameters = cost.param_count(model, (1, 32, 32, 3))
        log(f"{name}: {flops / 1e9:.3f} GFLOPs per image")
        try:
            result = train_and_evaluate(config)
        except NonFiniteError as error:  # one model diverging does not stop the comparison
            log(f"{name}: diverged ({error})")
            rows.append(
                {"model": name, "diverged": True, "parameters": parameters,
                 "forward_gflops": flops / 1e9}
            )  # fmt: skip
            continue
        epochs = result["epochs_run"]
        rows.append(
            {
                "model": name,
                "diverged": False,
                "test_accuracy": result["test_accuracy"],
                "parameters": parameters,
                "forward_gflops": flops / 1e9,
                "epoch_seconds": result["train_seconds"] / epochs,
                "images_per_second": result["images_per_second"],
                "compile_seconds": result["compile_seconds"],
            }
        )
    log(
        f"\n{'model':<20} {'test acc':>9} {'parameters':>11} {'GFLOPs':>7} {'s/epoch':>8} "
        f"{'img/s':>6}"
    )
    for row in rows:
        if row["diverged"]:
            log(f"{row['model']:<20} {'diverged':>9} {row['parameters']:>11,} "
                f"{row['forward_gflops']:7.3f}")  # fmt: skip
            continue
        log(
            f"{row['model']:<20} {100 * row['test_accuracy']:8.2f}% {row['parameters']:>11,} "
            f"{row['forward_gflops']:7.3f} {row['epoch_seconds']:8.1f} "
            f"{row['images_per_second']:6.0f}"
        )
    return cli.finish(base.workdir, {"runs": rows}, start)


if __name__ == "__main__":
    cli.run(main)

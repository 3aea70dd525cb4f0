"""Regularisation on a small CIFAR-10 training set: `python -m experiments.regularization`.

One small VGG-style network (`vgg_small`, 337,050 parameters) trained on only `--train_limit`
5,000 CIFAR-10 images (minus a 500-image validation split) with the same optimiser and schedule,
once plainly and once with each regulariser: L2 weight decay, dropout before the classifier,
data augmentation (random crop + flip), batch normalisation, and early stopping on the
validation split (the best validation epoch's weights are kept), and once with all of them.
The full 10,000-image test split scores every run.

Prints a table of final train accuracy, test accuracy and their gap (over-fitting), and writes
`plots/curves.png` (every run's train and validation curves) and `results.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError
from jaxdl.loop import log
from jaxdl.plots.curves import plot_curves
from jaxdl.rundir import RunDir
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="cifar10",
    model="vgg_small",
    epochs=30,
    batch_size=64,
    lr=0.02,
    optimizer="momentum",
    schedule="warmup_cosine",
    train_limit=5000,
    val_size=500,
    quiet=True,
    plots=False,
    workdir="runs/regularization",
)

# name -> (TrainConfig changes, model options)
SETTINGS = {
    "none": ({}, {}),
    "weight decay": ({"weight_decay": 5e-3}, {}),
    "dropout": ({}, {"dropout_rate": 0.5}),
    "augmentation": ({"crop_padding": 4, "flip": True}, {}),
    "batch norm": ({}, {"batch_norm": True}),
    "early stopping": ({"early_stopping_patience": 5}, {}),
    "all": (
        {"weight_decay": 5e-3, "crop_padding": 4, "flip": True, "early_stopping_patience": 5},
        {"dropout_rate": 0.5, "batch_norm": True},
    ),
}


def parser() -> argparse.ArgumentParser:
    # the settings' model options (dropout, batch norm) are vgg_small's: the model is fixed
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude={"model"})
    result.add_argument("--settings", default=",".join(SETTINGS), help="settings to run")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    base = cli.config_from_args(args, DEFAULTS)
    chosen = args.settings.split(",")
    unknown = [name for name in chosen if name not in SETTINGS]
    if unknown:
        raise ConfigError(
            f"unknown --settings {', '.join(unknown)}; choose from {', '.join(SETTINGS)}."
        )
    start = time.perf_counter()
    rows, histories = [], {}
    for name in chosen:
        changes, options = SETTINGS[name]
        config = dataclasses.replace(
            base,
            **changes,
            model_options=options,
            workdir=os.path.join(base.workdir, name.replace(" ", "_")),
        )
        log(f"{name}: {changes or ''} {options or ''}".rstrip())
        result = train_and_evaluate(config)
        history = RunDir(config.workdir).read_metrics()
        histories[name] = history
        best = history[result["best_epoch"] - 1] if config.early_stopping_patience else history[-1]
        rows.append(
            {
                "setting": name,
                "train_accuracy": best["train_accuracy"],
                "test_accuracy": result["test_accuracy"],
                "epochs_run": result["epochs_run"],
                "train_seconds": result["train_seconds"],
            }
        )
    log(f"\n{'setting':<15} {'train acc':>9} {'test acc':>9} {'gap':>7} {'epochs':>7}")
    for row in rows:
        gap = row["train_accuracy"] - row["test_accuracy"]
        log(
            f"{row['setting']:<15} {100 * row['train_accuracy']:8.2f}% "
            f"{100 * row['test_accuracy']:8.2f}% {100 * gap:6.2f}% {row['epochs_run']:>7}"
        )
    plot_curves(histories, os.path.join(RunDir(base.workdir).plots, "curves.png"))
    return cli.finish(base.workdir, {"runs": rows}, start)


if __name__ == "__main__":
    cli.run(main)

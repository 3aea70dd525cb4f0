"""An ensemble of independently seeded models: `python -m experiments.ensemble`.

Trains `--members` copies of one model that differ only in their seed (initialisation,
validation split, shuffling, augmentation, dropout), then averages their softmax probabilities
on the test split (every run leaves them in its `test_probabilities.npy`). Prints each member's
test accuracy and the ensemble's as members are added, and plots accuracy against ensemble size.
Defaults: the MNIST MLP (two hidden layers of 1024 ReLU units, dropout 0.2) for 3 epochs;
any classification model and dataset work (`--dataset cifar10 --model resnet20 ...`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from jaxdl import cli, data
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError
from jaxdl.loop import log
from jaxdl.plots import plt, save_figure
from jaxdl.rundir import RunDir
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="mlp",
    model_options={"dropout_rate": 0.2},
    epochs=3,
    batch_size=128,
    lr=1e-3,
    optimizer="adam",
    schedule="warmup_cosine",
    quiet=True,
    plots=False,
    save_predictions=True,
    workdir="runs/ensemble",
)


def ensemble_accuracies(probabilities: list[np.ndarray], labels: np.ndarray) -> list[float]:
    """Test accuracy of the average of the first k members' probabilities, for k = 1..n."""
    running = np.cumsum(np.stack(probabilities), axis=0)
    return [float(np.mean(p.argmax(-1) == labels)) for p in running]


def plot_ensemble(members: list[float], ensembles: list[float], path: str) -> str:
    sizes = np.arange(1, len(members) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, 100 * np.asarray(ensembles), "o-", label="ensemble of the first k members")
    ax.plot(sizes, 100 * np.asarray(members), "s", alpha=0.7, label="member k alone")
    ax.axhline(100 * np.mean(members), color="gray", ls="--", lw=1, label="mean single model")
    ax.set(
        title="Ensembling independently seeded models",
        xlabel="members k",
        ylabel="test accuracy (%)",
        xticks=sizes,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def parser() -> argparse.ArgumentParser:
    # the ensemble is made of the members' saved predictions: they are always saved
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude={"save_predictions"})
    result.add_argument("--members", type=int, default=5, help="models in the ensemble")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    options = DEFAULTS.model_options if args.model == DEFAULTS.model else {}
    base = cli.config_from_args(args, DEFAULTS, model_options=options)
    if args.members < 2:
        raise ConfigError(f"--members {args.members}: an ensemble needs at least 2 members.")
    start = time.perf_counter()
    probabilities, members = [], []
    for member in range(args.members):
        config = dataclasses.replace(
            base, seed=base.seed + member, workdir=os.path.join(base.workdir, f"member{member}")
        )
        log(f"member {member + 1}/{args.members}: seed {config.seed}")
        result = train_and_evaluate(config)
        members.append(result["test_accuracy"])
        probabilities.append(RunDir(config.workdir).load_predictions())
    labels = data.load(base.dataset, "test", base.data_dir, limit=base.test_limit).labels
    ensembles = ensemble_accuracies(probabilities, labels)
    log(f"\n{'members':>7} {'member alone':>13} {'ensemble':>9}")
    for k, (alone, together) in enumerate(zip(members, ensembles, strict=True), start=1):
        log(f"{k:>7} {100 * alone:12.2f}% {100 * together:8.2f}%")
    log(
        f"single models {100 * np.mean(members):.2f} ± {100 * np.std(members):.2f} % (mean ± std); "
        f"ensemble of {args.members}: {100 * ensembles[-1]:.2f} %"
    )
    plot_ensemble(members, ensembles, os.path.join(RunDir(base.workdir).plots, "ensemble.png"))
    results = {"member_test_accuracies": members, "ensemble_test_accuracies": ensembles}
    return cli.finish(base.workdir, results, start)


if __name__ == "__main__":
    cli.run(main)

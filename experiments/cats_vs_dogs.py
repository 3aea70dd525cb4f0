"""Fine-tuning against training from scratch: `python -m experiments.cats_vs_dogs`.

CIFAR-10's cat and dog images as a two-class task. A ResNet-20 is first trained on the other
eight classes (`--pretrain_epochs`); then, on the same cat / dog images, once from scratch
and once fine-tuned from those weights (`--init_from`: every layer but the new two-class head
starts trained; the whole network then trains at `--finetune_lr`), with `--small` training
images (`--small_epochs`) and with all of them (`--epochs`). Each run picks its best epoch on
the cat / dog validation images. Prints the four test accuracies and writes
`plots/cats_vs_dogs.png` and `results.json`; each run's own directory is below the run
directory (the pre-trained one is reused when it is there).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.loop import log
from jaxdl.plots import plt, save_figure
from jaxdl.rundir import RunDir
from jaxdl.tasks.subset import ClassSubset
from jaxdl.train import train_and_evaluate

CATS_AND_DOGS = (3, 5)
OTHERS = (0, 1, 2, 4, 6, 7, 8, 9)

DEFAULTS = TrainConfig(
    dataset="cifar10",
    model="resnet20",
    epochs=10,
    batch_size=128,
    lr=0.1,
    optimizer="nesterov",
    schedule="warmup_cosine",
    weight_decay=5e-4,
    crop_padding=4,
    flip=True,
    early_stopping_patience=1000,  # keep the best validation epoch's state, never stop early
    quiet=True,
    plots=False,
    workdir="runs/cats_vs_dogs",
)


def parser() -> argparse.ArgumentParser:
    exclude = {"init_from", "freeze", "model", "dataset", "time_budget_minutes"}
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude=exclude)
    result.add_argument("--pretrain_epochs", type=int, default=8, help="epochs on the 8 others")
    result.add_argument("--small", type=int, default=1000, help="images of the small regime")
    result.add_argument("--small_epochs", type=int, default=30, help="epochs with --small images")
    result.add_argument(
        "--finetune_lr", type=float, default=0.02, help="peak learning rate when fine-tuning"
    )
    return result


def plot_accuracies(rows: list[dict], path: str) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    regimes = list(dict.fromkeys(row["images"] for row in rows))
    width = 0.38
    for offset, start in ((-width / 2, "scratch"), (width / 2, "fine-tuned")):
        values = [
            100 * next(r["test_accuracy"] for r in rows if r["images"] == n and r["start"] == start)
            for n in regimes
        ]
        bars = ax.bar(np.arange(len(regimes)) + offset, values, width, label=start)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(
        range(len(regimes)),
        [f"{n:,} training images" if n != "all" else "all training images" for n in regimes],
    )
    ax.set(ylabel="test accuracy (%)", ylim=(50, 100), title="Cats vs dogs (CIFAR-10)")
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    base = cli.config_from_args(args, DEFAULTS)
    start = time.perf_counter()
    pretrained = os.path.join(base.workdir, "pretrain_8_classes")
    pre = train_and_evaluate(
        dataclasses.replace(base, epochs=args.pretrain_epochs, workdir=pretrained),
        ClassSubset(OTHERS),
    )
    log(f"pre-trained on the other 8 classes: {100 * pre['test_accuracy']:.2f} % test")
    rows = []
    for limit, epochs in ((args.small, args.small_epochs), (None, base.epochs)):
        for start_from in ("scratch", "fine-tuned"):
            tuned = start_from == "fine-tuned"
            name = f"{start_from}_{limit or 'all'}"
            config = dataclasses.replace(
                base,
                epochs=epochs,
                lr=args.finetune_lr if tuned else base.lr,
                init_from=pretrained if tuned else None,
                workdir=os.path.join(base.workdir, name),
            )
            result = train_and_evaluate(config, ClassSubset(CATS_AND_DOGS, limit))
            rows.append(
                {
                    "start": start_from,
                    "images": limit or "all",
                    "epochs": epochs,
                    "test_accuracy": result["test_accuracy"],
                    "best_epoch": result["best_epoch"],
                    "train_seconds": result["train_seconds"],
                }
            )
            log(f"{name}: {100 * result['test_accuracy']:.2f} % test")
    log(f"\n{'training images':>16} {'scratch':>9} {'fine-tuned':>11} {'gain':>7}")
    for images in dict.fromkeys(row["images"] for row in rows):
        pair = {r["start"]: r["test_accuracy"] for r in rows if r["images"] == images}
        log(
            f"{images:>16} {100 * pair['scratch']:>8.2f}% {100 * pair['fine-tuned']:>10.2f}% "
            f"{100 * (pair['fine-tuned'] - pair['scratch']):>+6.2f}"
        )
    plot_accuracies(rows, os.path.join(RunDir(base.workdir).plots, "cats_vs_dogs.png"))
    return cli.finish(
        base.workdir, {"pretrain_test_accuracy": pre["test_accuracy"], "runs": rows}, start
    )


if __name__ == "__main__":
    cli.run(main)

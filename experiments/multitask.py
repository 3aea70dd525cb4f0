"""Multi-task learning on CIFAR-10: `python -m experiments.multitask`.

One shared ResNet-20 trunk with two heads trained jointly: the 10 classes, and the animal /
vehicle super-class (airplane, automobile, ship, truck are vehicles). Each head is compared
with a single-task model of the same architecture trained the same way on its task alone.
The loss is the sum of both heads' cross-entropies (`--super_weight` scales the second);
everything else is the standard CIFAR pipeline (crop + flip, Nesterov SGD, warm-up + cosine).
The defaults train on `--train_limit` 10,000 images for 10 epochs so the three runs fit in
minutes on a CPU; raise both on an accelerator.

Each of the three runs is a full run (its own directory below `--workdir`: config, metrics,
checkpoints, curves). Prints a table: test accuracy of each task's single-task model and of
the multi-task head.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.loop import log
from jaxdl.tasks.multihead import CIFAR10_VEHICLE, MultiHead, MultiHeadTask, single_head
from jaxdl.train import train_and_evaluate

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
    train_limit=10000,
    quiet=True,
    workdir="runs/multitask",
)
# the super-class heads are CIFAR-10's: the dataset is not an option
UNSUPPORTED = MultiHeadTask.unsupported | {"dataset"}


def parser() -> argparse.ArgumentParser:
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude=UNSUPPORTED)
    result.add_argument(
        "--super_weight", type=float, default=1.0, help="weight of the super-class head's loss"
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    config = cli.config_from_args(args, DEFAULTS)
    start = time.perf_counter()
    tasks = {
        "multitask": MultiHeadTask(
            MultiHead((10, 2), (None, CIFAR10_VEHICLE), (1.0, args.super_weight)),
            ("classes", "animal_vehicle"),
        ),
        "class_only": MultiHeadTask(single_head(10), ("classes",)),
        "super_only": MultiHeadTask(single_head(2, CIFAR10_VEHICLE), ("animal_vehicle",)),
    }
    accuracies = {}
    for name, task in tasks.items():
        log(f"{name}: {config.model} with {task.heads.outputs} outputs")
        run_config = dataclasses.replace(config, workdir=os.path.join(config.workdir, name))
        accuracies[name] = train_and_evaluate(run_config, task)["test_head_accuracies"]
    class_multi, super_multi = accuracies["multitask"].values()
    class_single = accuracies["class_only"]["classes"]
    super_single = accuracies["super_only"]["animal_vehicle"]
    rows = [
        ("10 classes", class_single, class_multi),
        ("animal / vehicle", super_single, super_multi),
    ]
    log(f"\n{'task':<17} {'single-task':>12} {'multi-task head':>16}")
    for task_name, single, multi in rows:
        log(f"{task_name:<17} {100 * single:11.2f}% {100 * multi:15.2f}%")
    results = {
        "class_single_task": class_single,
        "class_multi_task": class_multi,
        "super_single_task": super_single,
        "super_multi_task": super_multi,
    }
    return cli.finish(config.workdir, results, start)


if __name__ == "__main__":
    cli.run(main)

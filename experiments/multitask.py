"""Multi-task learning on CIFAR-10: `python -m experiments.multitask`.

One shared ResNet-20 trunk with two heads trained jointly: the 10 classes, and the animal /
vehicle super-class (airplane, automobile, ship, truck are vehicles). Each head is compared
with a single-task model of the same architecture trained the same way on its task alone.
The loss is the sum of both heads' cross-entropies (`--super_weight` scales the second);
everything else is the standard CIFAR pipeline (crop + flip, Nesterov SGD, warm-up + cosine).
The defaults train on `--train_limit` 10,000 images for 10 epochs so the three runs fit in
minutes on a CPU; raise both on an accelerator.

Prints a table: test accuracy of each task's single-task model and of the multi-task head.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from jaxdl import cli, data, parallel
from jaxdl.errors import ConfigError
from jaxdl.loop import fit, log
from jaxdl.multitask import CIFAR10_VEHICLE, MultiHead, head_accuracies, single_head
from jaxdl.train import TrainConfig, initial_state, load_splits

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


def train_one(config: TrainConfig, objective: MultiHead, name: str, splits) -> list[float]:
    """Trains `config.model` with `objective` and returns each head's test accuracy."""
    train, val, test = splits
    mean, std = data.channel_stats(train.images)
    preprocess = data.Preprocess(mean, std, data.Augmentation(config.crop_padding, config.flip))
    steps = data.steps_per_epoch(len(train), config.batch_size)
    state, learning_rate_fn, data_key = initial_state(
        config, objective.outputs, train.image_shape, steps
    )
    runner = parallel.create_runner(
        config.parallel, objective=objective, l2_weight=config.optimizer_config().l2_weight()
    )
    log(f"{name}: {config.model} with {objective.outputs} outputs")
    result = fit(
        runner.put_state(state),
        train_fn=runner.train,
        eval_fn=runner.evaluate,
        local_state=runner.local_state,
        train_data=data.to_device(train),
        val_data=data.to_device(val) if len(val) else None,
        preprocess=preprocess,
        batch_size=config.batch_size,
        epochs=config.epochs,
        key=data_key,
        workdir=os.path.join(config.workdir, name),
        learning_rate_fn=learning_rate_fn,
        quiet=config.quiet,
    )
    final = runner.local_state(result.state)
    return head_accuracies(final, data.to_device(test), preprocess, objective)


def main(argv: list[str] | None = None) -> dict:
    parser = cli.parser(__doc__.splitlines()[0], DEFAULTS)
    parser.add_argument(
        "--super_weight", type=float, default=1.0, help="weight of the super-class head's loss"
    )
    args = parser.parse_args(argv)
    config = cli.config_from_args(args, DEFAULTS)
    config.validate()
    if config.dataset != "cifar10":
        raise ConfigError(
            f"the animal / vehicle heads are defined for cifar10, not {config.dataset!r}."
        )
    start = time.perf_counter()
    splits = load_splits(config)
    train, val, test = (len(split) for split in splits)
    log(f"cifar10: {train:,} train / {val:,} validation / {test:,} test images")
    both = MultiHead((10, 2), (None, CIFAR10_VEHICLE), (1.0, args.super_weight))
    class_multi, super_multi = train_one(config, both, "multitask", splits)
    (class_single,) = train_one(config, single_head(10), "class_only", splits)
    (super_single,) = train_one(config, single_head(2, CIFAR10_VEHICLE), "super_only", splits)
    rows = [
        ("10 classes", class_single, class_multi),
        ("animal / vehicle", super_single, super_multi),
    ]
    log(f"\n{'task':<17} {'single-task':>12} {'multi-task head':>16}")
    for task, single, multi in rows:
        log(f"{task:<17} {100 * single:11.2f}% {100 * multi:15.2f}%")
    results = {
        "class_single_task": class_single,
        "class_multi_task": class_multi,
        "super_single_task": super_single,
        "super_multi_task": super_multi,
        "wall_seconds": time.perf_counter() - start,
    }
    os.makedirs(config.workdir, exist_ok=True)
    with open(os.path.join(config.workdir, "results.json"), "w") as f:
        json.dump(results | {"config": dataclasses.asdict(config)}, f, indent=2, default=str)
    where = os.path.abspath(config.workdir)
    log(f"wall time {results['wall_seconds']:.1f} s; run directory {where}")
    return results


if __name__ == "__main__":
    cli.run(main)

"""Finding digits on a canvas: `python -m experiments.detection [--task detect|localise]`.

`--task detect` (the default): 96x96 canvases of 1 to 4 real MNIST digits, each scaled to
20-44 pixels, boxes tight around each digit; a centre-point detector (`centernet`: a small
ResNet trunk with a feature pyramid to stride 4 and CenterNet's heatmap, size and offset
heads) learns to find and classify them all. Prints the held-out AP@0.5 per digit, COCO's
mAP@[.5:.95] and, last, `test mAP@0.5: NN.NN %`; validation mAP@0.5 every epoch.

`--task localise`: classification plus localisation, one digit per 64x64 canvas; a zoo
classifier with four extra outputs (the box; by default `vgg_small` with BatchNorm, whose
dense head sees where the features are, unlike a global-pooling one) is trained with
cross-entropy plus L1 and generalised-IoU box losses. Prints the class accuracy and, last,
`test mean IoU: 0.NNN`.

Training canvases are made from MNIST's training digits (a seeded tenth of them kept for the
validation canvases), the held-out ones from its test digits, all with `--canvas_seed`. Each
training canvas is shifted and zoomed at random (`--shift_zoom`), its boxes with it. Writes
to the run directory `results.json`, `metrics.jsonl`, checkpoints (exact resume),
`test_detections.json` and `test_ground_truth.json` (COCO's formats; detect) and
`plots/detections.png` / `plots/localisation.png`, `plots/precision_recall.png` and
`plots/curves.png`.
"""

from __future__ import annotations

import argparse
import dataclasses

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.tasks.detection import Detection, Localisation
from jaxdl.train import train_and_evaluate

TASKS = {"detect": Detection, "localise": Localisation}
DETECT = TrainConfig(
    dataset="mnist",
    model="centernet",
    epochs=16,
    batch_size=64,
    eval_batch_size=250,
    lr=2e-3,
    optimizer="adamw",
    weight_decay=1e-4,
    schedule="warmup_cosine",
    workdir="runs/detection",
)
DEFAULTS = {
    "detect": DETECT,
    # the same optimizer and schedule; a residual trunk with a pooled class branch and a
    # positional box branch, fewer epochs
    "localise": dataclasses.replace(
        DETECT, model="localiser", epochs=10, workdir="runs/localisation"
    ),
}


def optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def parser(task_name: str = "detect") -> argparse.ArgumentParser:
    kind = TASKS[task_name]
    task = kind()
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS[task_name], exclude=kind.unsupported)
    result.add_argument(
        "--task", choices=sorted(TASKS), default=task_name, help="detect or localise"
    )
    add = lambda name, kind_of, text: result.add_argument(
        f"--{name}", type=kind_of, default=getattr(task, name), help=text
    )
    add("canvas", int, "canvas height and width in pixels")
    if task_name == "detect":
        add("min_digits", int, "fewest digits on a canvas")
        add("max_digits", int, "most digits on a canvas")
        add("max_iou", float, "largest IoU two digits' boxes may have")
        add("max_detections", int, "detections kept per canvas")
        add("score_threshold", float, "lowest heatmap score kept as a detection")
    add("min_size", int, "smallest digit (its longer side, pixels)")
    add("max_size", int, "largest digit (its longer side, pixels)")
    add("train_canvases", int, "training canvases (a tenth as many more for validation)")
    add("test_canvases", int, "held-out canvases")
    add("canvas_seed", int, "seed of every canvas (the same for any --seed)")
    result.add_argument(
        "--shift_zoom",
        type=optional_float,
        default=task.shift_zoom,
        help="augmentation: random shift, and zoom by a factor in [1 - z, 1 + z]; none: off",
    )
    return result


def task_name_of(argv: list[str] | None) -> str:
    """The `--task` of the command line (before the full parser, whose defaults depend on it)."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--task", choices=sorted(TASKS), default="detect")
    return probe.parse_known_args(argv)[0].task


def main(argv: list[str] | None = None) -> dict:
    name = task_name_of(argv)
    args = parser(name).parse_args(argv)
    defaults = DEFAULTS[name]
    if args.model != defaults.model:  # the default model's options are not another model's
        defaults = dataclasses.replace(defaults, model_options={})
    config = cli.config_from_args(args, defaults)
    options = {
        field: getattr(args, field)
        for field in TASKS[name].__dataclass_fields__
        if hasattr(args, field)
    }
    return train_and_evaluate(config, TASKS[name](**options))


if __name__ == "__main__":
    cli.run(main)

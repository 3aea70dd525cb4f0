"""Looking inside a trained ResNet-20: `python -m experiments.looking_inside`.

Trains two ResNet-20s on CIFAR-10 with the main job's ResNet-20 recipe (`experiments.cifar_resnet
--recipe resnet20`) for `--epochs` each, seeds `--seed` and `--seed` + 1 (their run directories,
`seed_N` below the run directory, are reused or resumed when they are there), or takes trained
classification runs (`--run_dir`, `--second_run_dir`). Then, on the first network:

- class visualisations: one input per class made by gradient ascent on that class's score
  (jitter, blur and decay keep it image-like), with the probability the network gives it and
  the share of them the second network classifies as the class they were made for;
- the nine test patches that excite each of `--channels` of a layer most (`--patch_layer`;
  by default the deepest whose units see at most half the image);
- the gradient, SmoothGrad, Grad-CAM and occlusion maps of test images;
- the deletion test: the mean true class probability of the first `--deletion_images` test
  images before and after deleting (setting to the mean colour) the 10 % of pixels SmoothGrad
  ranks highest, against 10 % chosen at random (the raw gradient's ranking beside them).

Prints each figure on a line of its own; writes `plots/class_visualisations.png`,
`plots/top_patches.png`, `plots/attribution.png` and `results.json` to the run directory.
`python -m jaxdl.plots RUN_DIR` draws the same pictures for any classification run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import numpy as np

from experiments import cifar_resnet
from jaxdl import cli
from jaxdl import data as data_lib
from jaxdl.build import restore_trained
from jaxdl.loop import log
from jaxdl.plots.inside import plot_class_visualisations
from jaxdl.plots.run import look_inside
from jaxdl.rundir import RunDir
from jaxdl.step import predict
from jaxdl.tools.features import to_pixels
from jaxdl.train import train_and_evaluate

DEFAULTS = dataclasses.replace(
    cifar_resnet.DEFAULTS,
    **cifar_resnet.RESNET20
    | {
        "epochs": 10,
        "time_budget_minutes": 0.0,
        "plots": False,
        "quiet": True,
        "workdir": "runs/looking_inside",
    },
)


def parser() -> argparse.ArgumentParser:
    exclude = {"time_budget_minutes", "init_from", "freeze"}
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude=exclude)
    result.add_argument(
        "--run_dir",
        default=None,
        help="a trained classification run to look inside (default: train one here)",
    )
    result.add_argument(
        "--second_run_dir",
        default=None,
        help="another trained run of the same data, to judge the class visualisations "
        "(default: train one here with the next seed)",
    )
    result.add_argument(
        "--patch_layer",
        default=None,
        help="top-level layer whose channels' top patches are drawn, e.g. BasicBlock_4 "
        "(default: the deepest whose units see at most half the image)",
    )
    result.add_argument(
        "--channels",
        type=lambda text: tuple(int(c) for c in text.split(",")),
        default=tuple(range(6)),
        help="channels of that layer, comma-separated (default: 0,1,2,3,4,5)",
    )
    result.add_argument(
        "--deletion_images",
        type=int,
        default=100,
        help="test images of the deletion test",
    )
    return result


def trained_run(config, seed: int) -> str:
    """The run directory of a network trained with `config` and `seed` (trained, resumed or
    reused as it stands)."""
    workdir = os.path.join(config.workdir, f"seed_{seed}")
    result = train_and_evaluate(dataclasses.replace(config, seed=seed, workdir=workdir))
    log(f"seed {seed}: {100 * result['test_accuracy']:.2f} % test accuracy ({workdir})")
    return workdir


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    config = cli.config_from_args(args, DEFAULTS)
    start = time.perf_counter()
    first_dir = args.run_dir or trained_run(config, config.seed)
    second_dir = args.second_run_dir or trained_run(config, config.seed + 1)
    results = analyse(
        first_dir, second_dir, config, args.deletion_images, args.patch_layer, args.channels
    )
    return cli.finish(config.workdir, results, start)


def analyse(
    first_dir: str,
    second_dir: str,
    config,
    deletion_images: int,
    patch_layer: str | None = None,
    channels: tuple[int, ...] = tuple(range(6)),
) -> dict:
    """Looks inside the network of run `first_dir`, judges its class visualisations with
    that of `second_dir`, prints every figure and returns them (plots go to `config.workdir`)."""
    first, second = restore_trained(first_dir), restore_trained(second_dir)
    test = data_lib.load(first.config.dataset, "test", config.data_dir, config.test_limit)
    plots = RunDir(config.workdir).plots
    inside = look_inside(
        plots,
        first.state,
        test,
        first.preprocess,
        seed=config.seed,
        deletion_images=deletion_images,
        patch_layer=patch_layer,
        channels=channels,
    )
    figures = inside.figures
    own = np.asarray(figures["class_visualisation_probability"])
    # the second network sees the same pixels, normalised its own way
    pixels = to_pixels(inside.visualisations, first.preprocess.mean, first.preprocess.std)
    other = jax.nn.softmax(predict(second.state, second.preprocess.inputs(pixels)))
    other = np.asarray(other)
    classes = np.arange(len(own))
    other_right = other.argmax(-1) == classes
    plot_class_visualisations(
        pixels,
        test.class_names,
        own,
        os.path.join(plots, "class_visualisations.png"),
        second=other[classes, classes],
    )
    for k, name in enumerate(test.class_names):
        log(
            f"class visualisation {name}: probability {own[k]:.3f} (own network), "
            f"{other[k, k]:.3f} (second network)"
        )
    log(
        f"class visualisations at probability >= 0.9 (own network): "
        f"{int((own >= 0.9).sum())} of {len(own)}"
    )
    log(
        f"class visualisations the second network classifies as their class: "
        f"{int(other_right.sum())} of {len(own)} ({100 * other_right.mean():.0f} %)"
    )
    if "top_patch_layer" in figures:
        log(
            f"top patches: {figures['top_patch_layer']} "
            f"({figures['top_patch_field']}x{figures['top_patch_field']} px fields)"
        )
    if "grad_cam_layer" in figures:
        log(f"Grad-CAM layer: {figures['grad_cam_layer']}")
    count = figures["deletion_images"]
    for name, result in figures["deletion"].items():
        log(
            f"deletion test ({count} test images, 10 % of pixels), {name}: true class "
            f"probability {result['original']:.3f} -> {result['top_deleted']:.3f} deleting the "
            f"top-ranked, {result['random_deleted']:.3f} deleting at random"
        )
    return {
        "run_dir": first_dir,
        "second_run_dir": second_dir,
        **figures,
        "second_network_probability": other[classes, classes].tolist(),
        "second_network_correct": float(other_right.mean()),
        "plots": inside.paths,
    }


if __name__ == "__main__":
    cli.run(main)

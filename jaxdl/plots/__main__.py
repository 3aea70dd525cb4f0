"""Regenerate a run's plots: `python -m jaxdl.plots RUN_DIR [RUN_DIR ...]`.

With one run directory of a classification run (finished or interrupted), every plot of
`jaxdl.plots.run` is rewritten to RUN_DIR/plots from its config, metrics and latest checkpoint,
and the pictures of what the network learned are drawn beside them (`look_inside`: class
visualisations, the test patches that excite a middle layer's channels most, gradient,
SmoothGrad, Grad-CAM and occlusion maps).
With several, their training curves are also overlaid in one figure (`--out`, default
`curves_comparison.png`).
"""

from __future__ import annotations

import argparse
import os

from jaxdl import cli
from jaxdl import data as data_lib
from jaxdl.build import initial_state
from jaxdl.checkpoint import Checkpointer
from jaxdl.config import config_from_values
from jaxdl.errors import ConfigError
from jaxdl.plots.curves import plot_curves
from jaxdl.plots.run import look_inside, save_run_plots
from jaxdl.rundir import RunDir
from jaxdl.tasks.classification import class_probabilities, load_splits


def regenerate(path: str) -> list[str]:
    """Rewrites every plot of the run directory `path` and returns their paths."""
    rundir = RunDir(path)
    config = config_from_values(rundir.read_config())
    train, _, test = load_splits(config)
    steps = data_lib.steps_per_epoch(len(train), config.batch_size)
    state, learning_rate_fn, _ = initial_state(config, train.num_classes, train.image_shape, steps)
    restored = Checkpointer(rundir.checkpoints).restore_latest(state, config.model)
    if restored is None:
        raise ConfigError(f"{path!r} has no checkpoint yet; plots need trained parameters.")
    state = restored[0]
    mean, std = data_lib.channel_stats(train.images)
    preprocess = data_lib.Preprocess(mean, std)
    probabilities = class_probabilities(state, data_lib.to_device(test), preprocess)
    drawn = save_run_plots(
        rundir.plots,
        state,
        rundir.read_metrics(),
        learning_rate_fn,
        steps * config.epochs,
        test,
        preprocess,
        probabilities,
    )
    return drawn + look_inside(rundir.plots, state, test, preprocess, config.seed).paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories written by jaxdl")
    parser.add_argument(
        "--out",
        default="curves_comparison.png",
        help="where the overlaid curves of several runs go",
    )
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        for path in regenerate(run_dir):
            print(path)
    if len(args.run_dirs) > 1:
        histories = {
            os.path.basename(os.path.normpath(run_dir)): RunDir(run_dir).read_metrics()
            for run_dir in args.run_dirs
        }
        print(plot_curves(histories, args.out))


if __name__ == "__main__":
    cli.run(main)

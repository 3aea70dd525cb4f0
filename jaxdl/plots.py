"""Regenerate a run's plots: `python -m jaxdl.plots RUN_DIR [RUN_DIR ...]`.

With one run directory (finished or interrupted), every plot of `jaxdl.report` is rewritten to
RUN_DIR/plots from its config, metrics and latest checkpoint. With several, their training
curves are also overlaid in one figure (`--out`, default `curves_comparison.png`).
"""

from __future__ import annotations

import argparse
import json
import os

from jaxdl import cli, viz
from jaxdl import data as data_lib
from jaxdl.checkpoint import Checkpointer
from jaxdl.errors import ConfigError
from jaxdl.report import save_run_plots
from jaxdl.train import config_from_file, initial_state, load_splits, read_history


def regenerate(run_dir: str) -> list[str]:
    """Rewrites every plot of `run_dir` and returns their paths."""
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(config_path):
        raise ConfigError(f"{run_dir!r} has no config.json; pass a run directory jaxdl wrote.")
    config = config_from_file(config_path)
    train, _, test = load_splits(config)
    steps = data_lib.steps_per_epoch(len(train), config.batch_size)
    state, learning_rate_fn, _ = initial_state(config, train.num_classes, train.image_shape, steps)
    restored = Checkpointer(os.path.join(run_dir, "checkpoints")).restore_latest(
        state, config.model
    )
    if restored is None:
        raise ConfigError(f"{run_dir!r} has no checkpoint yet; plots need trained parameters.")
    state = restored[0]
    mean, std = data_lib.channel_stats(train.images)
    preprocess = data_lib.Preprocess(mean, std)
    history = read_history(run_dir, before_epoch=10**9)
    return save_run_plots(
        run_dir, state, history, learning_rate_fn, steps * config.epochs, test, preprocess
    )


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
        histories = {}
        for run_dir in args.run_dirs:
            with open(os.path.join(run_dir, "metrics.jsonl")) as f:
                histories[os.path.basename(os.path.normpath(run_dir))] = [
                    json.loads(line) for line in f if line.strip()
                ]
        print(viz.plot_curves(histories, args.out))


if __name__ == "__main__":
    cli.run(main)

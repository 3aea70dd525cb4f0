"""Optimizers side by side on one network: `python -m experiments.optimizers`.

One MNIST MLP (`--widths`, ReLU), one seed, one initialisation, trained for `--epochs` with a
constant learning rate by SGD, momentum, Nesterov momentum, Adagrad, RMSProp, Adam and AdamW
(decoupled weight decay 1e-2, as PyTorch's default); each at the best of a small learning-rate
grid, chosen by the validation loss after training (never by the test set). Plots the
training loss (logged every 20 steps, the mean of the last 100 steps) against steps and
against wall time for each optimizer at its chosen rate, and prints a table of the steps and
seconds each needs to bring that loss under `--target_loss`, with its validation and test
accuracy. Writes `plots/optimizers.png` and `results.json`; every run's own directory is below
the run directory.
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
from jaxdl.train import train_and_evaluate

# learning rates tried per optimizer: a factor of ~3 apart around the usual values
GRIDS = {
    "sgd": (0.03, 0.1, 0.3),
    "momentum": (0.01, 0.03, 0.1),
    "nesterov": (0.01, 0.03, 0.1),
    "adagrad": (0.01, 0.03, 0.1),
    "rmsprop": (1e-4, 3e-4, 1e-3),
    "adam": (3e-4, 1e-3, 3e-3),
    "adamw": (3e-4, 1e-3, 3e-3),
}
SMOOTHING = 5  # logged points (of 20 steps each) in the running mean of the training loss

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="mlp",
    epochs=3,
    batch_size=128,
    schedule="constant",
    quiet=True,
    plots=False,
    workdir="runs/optimizers",
)


def parser() -> argparse.ArgumentParser:
    exclude = {"model", "layers", "optimizer", "lr", "schedule", "warmup_epochs", "momentum"}
    exclude |= {"weight_decay", "weight_decay_mode", "lr_decay", "plateau_patience"}
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude=exclude)
    result.add_argument("--widths", default="256,256", help="hidden layer widths")
    result.add_argument(
        "--optimizers", default=",".join(GRIDS), help="optimizers to compare (comma-separated)"
    )
    result.add_argument(
        "--target_loss", type=float, default=0.1, help="the training loss the table times"
    )
    return result


def smoothed(points: list[tuple[int, float, float]]) -> np.ndarray:
    """f64[n, 3] of (step, seconds, running-mean loss) from `RunDir.read_step_metrics`."""
    table = np.asarray(points, np.float64).reshape(-1, 3)
    if not len(table):
        return table
    window = np.ones(SMOOTHING) / SMOOTHING
    losses = np.convolve(table[:, 2], window, "full")[: len(table)]
    counts = np.minimum(np.arange(1, len(table) + 1), SMOOTHING)
    table[:, 2] = losses * SMOOTHING / counts
    return table


def plot_curves(curves: dict[str, np.ndarray], target: float, path: str) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3), sharey=True)
    for name, table in curves.items():
        axes[0].plot(table[:, 0], table[:, 2], label=name)
        axes[1].plot(table[:, 1], table[:, 2], label=name)
    for ax, xlabel in zip(axes, ("step", "seconds (from the first logged step)"), strict=True):
        ax.axhline(target, color="grey", lw=0.8, ls=":")
        ax.set(xlabel=xlabel, yscale="log")
        ax.grid(alpha=0.3, which="both")
    axes[0].set(ylabel=f"training loss (mean of the last {20 * SMOOTHING} steps)")
    axes[1].legend(title="optimizer (best lr)")
    fig.suptitle("One MNIST MLP, one seed: training loss by optimizer")
    return save_figure(fig, path)


def first_below(table: np.ndarray, target: float) -> tuple[float, float]:
    """(step, seconds) of the first logged point whose smoothed loss is under `target`."""
    below = np.flatnonzero(table[:, 2] < target)
    return (table[below[0], 0], table[below[0], 1]) if len(below) else (np.nan, np.nan)


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    base = cli.config_from_args(args, DEFAULTS)
    widths = tuple(int(w) for w in args.widths.split(",") if w)
    base = dataclasses.replace(base, model_options={"widths": widths})
    start = time.perf_counter()
    rows, curves = [], {}
    for name in args.optimizers.split(","):
        trials = []
        for lr in GRIDS[name]:
            config = dataclasses.replace(
                base,
                optimizer=name,
                lr=lr,
                weight_decay=1e-2 if name == "adamw" else 0.0,
                workdir=os.path.join(base.workdir, f"{name}_lr{lr:g}"),
            )
            result = train_and_evaluate(config)
            last = RunDir(config.workdir).read_metrics()[-1]
            trials.append((last.get("val_loss", np.inf), lr, config.workdir, result, last))
            log(f"{name} lr {lr:g}: validation loss {trials[-1][0]:.4f}")
        val_loss, lr, workdir, result, last = min(trials, key=lambda trial: trial[0])
        table = smoothed(RunDir(workdir).read_step_metrics("loss"))
        curves[f"{name} {lr:g}"] = table
        step, seconds = first_below(table, args.target_loss)
        rows.append(
            {
                "optimizer": name,
                "lr": lr,
                "val_loss": val_loss,
                "val_accuracy": last.get("val_accuracy"),
                "test_accuracy": result["test_accuracy"],
                "steps_to_target": step,
                "seconds_to_target": seconds,
            }
        )
    log(
        f"\n{'optimizer':<10} {'best lr':>8} {'val loss':>9} {'test acc':>9} "
        f"{'steps to ' + str(args.target_loss):>15} {'seconds':>8}"
    )
    for row in rows:
        steps = "never" if np.isnan(row["steps_to_target"]) else f"{row['steps_to_target']:.0f}"
        seconds = "" if np.isnan(row["seconds_to_target"]) else f"{row['seconds_to_target']:.1f}"
        log(
            f"{row['optimizer']:<10} {row['lr']:>8g} {row['val_loss']:>9.4f} "
            f"{100 * row['test_accuracy']:>8.2f}% {steps:>15} {seconds:>8}"
        )
    plot_curves(
        curves, args.target_loss, os.path.join(RunDir(base.workdir).plots, "optimizers.png")
    )
    return cli.finish(base.workdir, {"runs": rows, "target_loss": args.target_loss}, start)


if __name__ == "__main__":
    cli.run(main)

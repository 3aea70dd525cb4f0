"""MNIST read row by row by a sequence model: `python -m experiments.sequential_mnist`.

Each digit is a sequence of 28 steps of 28 pixels, top row first; `--model` reads it with an
Elman RNN (`--activation tanh` or `sigmoid`), an LSTM, a GRU (one layer of `--hidden` units
each, the class read from the final hidden state) or a small Transformer encoder (every row
a token; positions learned). Adam with warm-up + cosine and gradients clipped to global norm
1 (`--clip_grad_norm`), which plain RNNs need.

It also measures the vanishing gradient: the norm of the loss gradient with respect to input
row t, t = 1..28, over the first 1,000 test digits, at initialisation and after training,
printed as the ratio of step 1 to step 28, saved in `results.json` and plotted on a log scale
(`plots/input_gradients.png`). `--compare RUN_DIR ...` draws several runs' curves in one plot
and prints their table, without training. See the README for the measured figures.
"""

from __future__ import annotations

import argparse
import json
import os

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError
from jaxdl.plots.curves import plot_input_gradients
from jaxdl.tasks.sequential import RowByRow
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="lstm_classifier",
    epochs=12,
    batch_size=128,
    lr=2e-3,
    optimizer="adam",
    schedule="warmup_cosine",
    clip_grad_norm=1.0,
    workdir="runs/sequential_mnist",
)
MODELS = {
    "rnn": "rnn_classifier",
    "lstm": "lstm_classifier",
    "gru": "gru_classifier",
    "transformer": "transformer_classifier",
}


def parser() -> argparse.ArgumentParser:
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude=RowByRow.unsupported | {"model"})
    result.add_argument(
        "--model",
        dest="sequence_model",
        choices=tuple(MODELS),
        help="sequence model (default: lstm)",
    )
    result.add_argument(
        "--activation", choices=("tanh", "sigmoid"), help="the RNN's activation (default: tanh)"
    )
    result.add_argument(
        "--hidden",
        type=int,
        help="hidden units (rnn, lstm, gru) or width (transformer) (default: 128)",
    )
    result.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN_DIR",
        help="plot and tabulate these runs' input gradients (no training)",
    )
    return result


def model_choice(args: argparse.Namespace) -> tuple[str, dict]:
    """(zoo model name, its options) from the options given, else a repeated run's (--config),
    else the defaults."""
    saved = getattr(args, "saved_config", None) or {}
    saved_model = {name: short for short, name in MODELS.items()}.get(saved.get("model"))
    saved_options = saved.get("model_options", {}) if saved_model else {}
    model = args.sequence_model or saved_model or "lstm"
    if model != saved_model:
        saved_options = {}
    if args.activation and model != "rnn":
        raise ConfigError(
            f"--activation {args.activation} is the RNN's; --model {model} has its own gates. "
            f"Drop it or use --model rnn."
        )
    if model == "transformer":
        width = args.hidden or saved_options.get("dim", 128 // 2)
        return MODELS[model], {"dim": width, "mlp_dim": 2 * width}
    options = {"hidden": args.hidden or saved_options.get("hidden", 128)}
    if model == "rnn":
        options["activation"] = args.activation or saved_options.get("activation", "tanh")
    return MODELS[model], options


def compare(run_dirs: list[str]) -> dict:
    """The input-gradient table and one plot of several finished runs."""
    curves, rows = {}, {}
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "results.json")
        if not os.path.exists(path):
            raise ConfigError(f"{run_dir} has no results.json; train it first.")
        with open(path) as file:
            results = json.load(file)
        if "input_gradient_norms_initial" not in results:
            raise ConfigError(f"{run_dir} is not a sequential_mnist run (no input gradients).")
        with open(os.path.join(run_dir, "config.json")) as file:
            config = json.load(file)
        label = config["model"].removesuffix("_classifier")
        if config["model_options"].get("activation"):
            label += f" ({config['model_options']['activation']})"
        for when in ("initial", "trained"):
            curves[f"{label}, {when}"] = results[f"input_gradient_norms_{when}"]
        rows[label] = results
    print("| model | step 1 / step 28 at initialisation | after training | test accuracy |")
    print("| --- | --- | --- | --- |")
    for label, results in rows.items():
        print(
            f"| {label} | {results['input_gradient_ratio_initial']:.2e} | "
            f"{results['input_gradient_ratio_trained']:.2e} | "
            f"{100 * results['test_accuracy']:.2f} % |"
        )
    path = plot_input_gradients(curves, os.path.join(run_dirs[0], "..", "input_gradients.png"))
    print(f"plot: {os.path.normpath(path)}")
    return {label: r["input_gradient_ratio_trained"] for label, r in rows.items()}


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.compare:
        return compare(args.compare)
    model, options = model_choice(args)
    config = cli.config_from_args(args, DEFAULTS, model=model, model_options=options)
    return train_and_evaluate(config, RowByRow())


if __name__ == "__main__":
    cli.run(main)

"""An MLP on MNIST: `python -m experiments.mnist_mlp`.

Defaults (two hidden layers of 1024 ReLU units, dropout 0.2, Adam with warm-up + cosine,
20 epochs) reach about 98.5 % test accuracy; see the README for the measured figure.
"""

from __future__ import annotations

import argparse

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.errors import ConfigError
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="mlp",
    epochs=20,
    batch_size=128,
    lr=1e-3,
    optimizer="adam",
    schedule="warmup_cosine",
    workdir="runs/mnist_mlp",
)


# the MLP's own options (they shape the MLP only): option -> (model option, default, parse)
MLP_OPTIONS = {
    "widths": ("widths", "1024,1024", lambda text: tuple(int(w) for w in text.split(",") if w)),
    "activation": ("act", "relu", str),
    "init": ("weight_init", "he", str),
    "dropout": ("dropout_rate", 0.2, float),
}


def parser() -> argparse.ArgumentParser:
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS)
    mlp = result.add_argument_group("MLP options (with --model mlp only)")
    mlp.add_argument("--widths", help="hidden layer widths, comma-separated (default: 1024,1024)")
    mlp.add_argument(
        "--activation",
        choices=("sigmoid", "tanh", "relu", "leaky_relu", "elu", "maxout"),
        help="hidden activation (default: relu)",
    )
    mlp.add_argument(
        "--init", choices=("he", "xavier", "lecun"), help="kernel initialisation (default: he)"
    )
    mlp.add_argument(
        "--dropout", type=float, help="dropout rate after each hidden layer (default: 0.2)"
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    given = [name for name in MLP_OPTIONS if getattr(args, name) is not None]
    model_options = {}
    if args.model == "mlp":
        # a repeated run (--config) keeps its own MLP's options unless given again
        saved = (getattr(args, "saved_config", None) or {}).get("model_options", {})
        for name, (option, default, parse) in MLP_OPTIONS.items():
            value = getattr(args, name)
            if value is not None:
                model_options[option] = parse(value)
            elif option in saved:
                model_options[option] = cli.from_json(saved[option])
            else:
                model_options[option] = parse(default)
    elif given:
        raise ConfigError(
            f"--{given[0]} shapes the MLP only, not model {args.model!r}; drop it or use "
            f"--model mlp."
        )
    config = cli.config_from_args(args, DEFAULTS, model_options=model_options)
    return train_and_evaluate(config)


if __name__ == "__main__":
    cli.run(main)

"""An MLP on MNIST: `python -m experiments.mnist_mlp`.

Defaults (two hidden layers of 1024 ReLU units, dropout 0.2, Adam with warm-up + cosine,
20 epochs) reach about 98.5 % test accuracy; see the README for the measured figure.
"""

from __future__ import annotations

from jaxdl import cli
from jaxdl.config import TrainConfig
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


def main(argv: list[str] | None = None) -> dict:
    parser = cli.parser(__doc__.splitlines()[0], DEFAULTS)
    parser.add_argument(
        "--widths", default="1024,1024", help="MLP hidden layer widths, comma-separated"
    )
    parser.add_argument(
        "--activation",
        default="relu",
        choices=("sigmoid", "tanh", "relu", "leaky_relu", "elu", "maxout"),
        help="hidden activation",
    )
    parser.add_argument(
        "--init", default="he", choices=("he", "xavier", "lecun"), help="kernel init"
    )
    parser.add_argument(
        "--dropout", type=float, default=0.2, help="dropout rate after each hidden layer"
    )
    args = parser.parse_args(argv)
    model_options = {}
    if args.model == "mlp":  # the MLP options above shape the MLP only
        model_options = {
            "widths": tuple(int(w) for w in args.widths.split(",") if w),
            "act": args.activation,
            "weight_init": args.init,
            "dropout_rate": args.dropout,
        }
    config = cli.config_from_args(args, DEFAULTS, model_options=model_options)
    return train_and_evaluate(config)


if __name__ == "__main__":
    cli.run(main)

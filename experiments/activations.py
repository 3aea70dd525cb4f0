"""Activations and initialisation in a deep MNIST MLP: `python -m experiments.activations`.

The same MLP (`--depth` hidden layers of `--width` units) trained with the same plain SGD +
momentum schedule for every hidden activation (sigmoid, tanh, ReLU, Leaky ReLU with slope
`--leaky_slope`, PReLU with a learned slope per unit, ELU, Maxout)
and both initialisations (Xavier/Glorot, He). Before training, the cross-entropy's gradient
norm at every layer's weights on one batch of 256 shows which combinations let the signal
reach the first layers: with sigmoid it shrinks layer after layer towards the input
(vanishing gradients), and plain SGD barely moves those layers. A combination whose loss
becomes non-finite (Maxout with He initialisation: no half of the units is zeroed, so He's
doubled variance compounds layer after layer) is reported as diverged.

Prints a table of test accuracy (and first / last layer gradient norms) per combination and
writes `plots/gradient_norms.png` and `results.json`; each run's own directory is below the
run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import numpy as np

from jaxdl import cli, data, models
from jaxdl.config import TrainConfig
from jaxdl.course.diagnostics import kernel_gradient_norms
from jaxdl.errors import NonFiniteError
from jaxdl.loop import log
from jaxdl.plots import plt, save_figure
from jaxdl.rundir import RunDir
from jaxdl.train import train_and_evaluate

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "maxout")
INITS = ("xavier", "he")

DEFAULTS = TrainConfig(
    dataset="mnist",
    model="mlp",
    epochs=4,
    batch_size=128,
    lr=0.02,
    optimizer="momentum",
    schedule="warmup_cosine",
    quiet=True,
    plots=False,
    workdir="runs/activations",
)


def first_batch(config: TrainConfig, size: int = 256):
    """The first `size` training images (normalised as training normalises them) and labels."""
    train = data.load(config.dataset, "train", config.data_dir, limit=size)
    mean, std = data.channel_stats(train.images)
    return data.normalize(train.images, mean, std), train.labels


def plot_gradient_norms(norms: dict[tuple[str, str], list[float]], path: str) -> str:
    fig, axes = plt.subplots(1, len(INITS), figsize=(11, 4.2), sharey=True)
    for ax, init in zip(axes, INITS, strict=True):
        for act in ACTIVATIONS:
            values = norms[(act, init)]
            ax.plot(np.arange(1, len(values) + 1), values, "o-", label=act, markersize=4)
        ax.set_yscale("log")
        ax.set(
            title=f"{init} initialisation",
            xlabel="layer (1 = input side, last = classifier)",
            ylabel="gradient norm of the layer's weights",
        )
        ax.grid(alpha=0.3, which="both")
    axes[-1].legend(title="activation")
    fig.suptitle("Gradient norms per layer at initialisation (one batch of 256 MNIST images)")
    return save_figure(fig, path)


def parser() -> argparse.ArgumentParser:
    # the model is the MLP these options shape, and it has no convolution to choose layers for
    result = cli.parser(__doc__.splitlines()[0], DEFAULTS, exclude={"model", "layers"})
    result.add_argument("--depth", type=int, default=8, help="hidden layers")
    result.add_argument("--width", type=int, default=256, help="units per hidden layer")
    result.add_argument(
        "--activations", default=",".join(ACTIVATIONS), help="activations to compare"
    )
    result.add_argument(
        "--leaky_slope", type=float, default=0.01, help="Leaky ReLU's slope below 0 (or 0.1)"
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    base = cli.config_from_args(args, DEFAULTS)
    start = time.perf_counter()
    images, labels = first_batch(base)
    rows, norms = [], {}
    for act in args.activations.split(","):
        for init in INITS:
            options = {"widths": (args.width,) * args.depth, "act": act, "weight_init": init}
            if act == "leaky_relu":
                options["leaky_slope"] = args.leaky_slope
            model = models.create("mlp", num_classes=10, **options)
            variables = model.init(jax.random.PRNGKey(base.seed), images[:1])
            layer_norms = [n for _, n in kernel_gradient_norms(model, variables, images, labels)]
            norms[(act, init)] = layer_norms
            config = dataclasses.replace(
                base, model_options=options, workdir=os.path.join(base.workdir, f"{act}_{init}")
            )
            try:
                result = train_and_evaluate(config)
            except NonFiniteError as error:  # a diverging combination is a result too
                log(f"{act} + {init}: diverged ({error})")
                result = {"test_accuracy": float("nan"), "train_seconds": float("nan")}
            rows.append(
                {
                    "activation": act,
                    "init": init,
                    "test_accuracy": result["test_accuracy"],
                    "diverged": bool(np.isnan(result["test_accuracy"])),
                    "first_layer_gradient_norm": layer_norms[0],
                    "last_layer_gradient_norm": layer_norms[-1],
                    "train_seconds": result["train_seconds"],
                }
            )
    log(
        f"\n{'activation':<11} {'init':<7} {'test acc':>9} {'grad norm layer 1':>18} "
        f"{'last layer':>11}"
    )
    for row in rows:
        accuracy = "diverged" if row["diverged"] else f"{100 * row['test_accuracy']:.2f}%"
        log(
            f"{row['activation']:<11} {row['init']:<7} {accuracy:>9} "
            f"{row['first_layer_gradient_norm']:18.2e} {row['last_layer_gradient_norm']:11.2e}"
        )
    if set(norms) == {(a, i) for a in ACTIVATIONS for i in INITS}:
        plot_gradient_norms(norms, os.path.join(RunDir(base.workdir).plots, "gradient_norms.png"))
    return cli.finish(base.workdir, {"runs": rows}, start)


if __name__ == "__main__":
    cli.run(main)

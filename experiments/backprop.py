"""An MNIST MLP trained by backpropagation written by hand: `python -m experiments.backprop`.

The network is `jaxdl.course.backprop`'s layers (Linear, ReLU, softmax cross-entropy), each
with its forward pass, its hand-written backward pass and a plain gradient-descent update:
no `jax.grad` anywhere (the tests hold every gradient to it). Mini-batch SGD with a learning
rate that decays linearly to zero; pixels scaled to [0, 1]. The last 5,000 training images
are held out for validation. Prints the loss and accuracies per epoch and, last,
`test accuracy: NN.NN %`; writes `results.json` and `plots/curves.png`.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import cli, data
from jaxdl.course.backprop import SoftmaxCrossEntropy, mlp
from jaxdl.errors import ConfigError
from jaxdl.loop import log
from jaxdl.plots.curves import plot_curves
from jaxdl.rundir import RunDir


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter
    )
    result.add_argument("--widths", default="512,256", help="hidden layer widths")
    result.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    result.add_argument("--batch_size", type=int, default=64, help="images per step")
    result.add_argument("--lr", type=float, default=0.1, help="initial learning rate")
    result.add_argument("--seed", type=int, default=0, help="initialisation and order seed")
    result.add_argument("--train_limit", type=int, default=None, help="use the first N images")
    result.add_argument("--data_dir", default=None, help="TFDS data folder")
    result.add_argument("--workdir", default="runs/backprop", help="run directory")
    return result


def flat(split) -> tuple[jax.Array, jax.Array]:
    images = jnp.asarray(split.images.reshape(len(split), -1), jnp.float32) / 255.0
    return images, jnp.asarray(split.labels)


def accuracy(network, images, labels, batch_size: int = 2000) -> float:
    hits = 0
    for start in range(0, len(labels), batch_size):
        logits = network.forward(images[start : start + batch_size])
        hits += int((logits.argmax(-1) == labels[start : start + batch_size]).sum())
    return hits / len(labels)


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    start = time.perf_counter()
    full = data.load("mnist", "train", args.data_dir, limit=args.train_limit)
    val_size = max(1, min(5000, len(full) // 10))
    if len(full) - val_size < args.batch_size:
        raise ConfigError(
            f"{len(full) - val_size} training images are fewer than --batch_size "
            f"{args.batch_size}; raise --train_limit or lower --batch_size."
        )
    train_x, train_y = flat(full.take(np.arange(len(full) - val_size)))
    val_x, val_y = flat(full.take(np.arange(len(full) - val_size, len(full))))
    test_x, test_y = flat(data.load("mnist", "test", args.data_dir))
    widths = [int(w) for w in args.widths.split(",") if w]
    init_key, order_key = jax.random.split(jax.random.PRNGKey(args.seed))
    network = mlp([train_x.shape[1], *widths, 10], init_key)
    loss_layer = SoftmaxCrossEntropy()
    steps = len(train_y) // args.batch_size
    total, history = steps * args.epochs, []
    log(f"MLP {'-'.join(map(str, [784, *widths, 10]))} with hand-written gradients")
    for epoch in range(args.epochs):
        order = np.asarray(
            jax.random.permutation(jax.random.fold_in(order_key, epoch), len(train_y))
        )
        losses = []
        for step in range(steps):
            rows = order[step * args.batch_size : (step + 1) * args.batch_size]
            loss = loss_layer.forward(network.forward(train_x[rows]), train_y[rows])
            network.backward(loss_layer.backward())
            network.update(args.lr * (1 - (epoch * steps + step) / total))
            losses.append(loss)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(jnp.mean(jnp.stack(losses))),
            "val_accuracy": accuracy(network, val_x, val_y),
        }
        history.append(record)
        log(
            f"epoch {epoch + 1:>2}/{args.epochs}  train loss {record['train_loss']:.4f}  "
            f"val acc {100 * record['val_accuracy']:.2f} %"
        )
    test = accuracy(network, test_x, test_y)
    plot_curves(
        {"backprop by hand": history}, os.path.join(RunDir(args.workdir).plots, "curves.png")
    )
    log(f"test accuracy: {100 * test:.2f} %")
    return cli.finish(args.workdir, {"test_accuracy": test, "history": history}, start)


if __name__ == "__main__":
    cli.run(main)

"""Translating number words to digits and back: `python -m experiments.translate`.

A small encoder-decoder Transformer (`seq2seq_transformer`: 2 encoder and 2 decoder blocks of
width 128, sinusoidal positions) learns both directions at once, "three hundred and four" ->
"304" and "304" -> "three hundred and four", a direction token opening each source
(`jaxdl.data.numbers`). Train, validation and test numbers are disjoint sets drawn with the
seed, so no test number is seen in training in either direction. It trains for as many
epochs as fit 18 minutes here (`--time_budget_minutes`; at most `--epochs`), with teacher
forcing;
the test decodes greedily in one jitted loop and prints exact-match accuracy per direction,
per-token accuracy and a few of the wrong outputs; the last line is `test accuracy: NN.NN %`
(exact match over both directions). See the README for the measured figures.
"""

from __future__ import annotations

import argparse

from jaxdl import cli
from jaxdl.config import TrainConfig
from jaxdl.tasks.translation import NumberTranslation
from jaxdl.train import train_and_evaluate

DEFAULTS = TrainConfig(
    dataset="number_words",
    model="seq2seq_transformer",
    epochs=40,
    time_budget_minutes=18.0,
    batch_size=128,
    eval_batch_size=1000,
    lr=1e-3,
    optimizer="adamw",
    weight_decay=1e-4,
    schedule="warmup_cosine",
    warmup_epochs=0.5,
    clip_grad_norm=1.0,
    workdir="runs/translate",
)


def parser() -> argparse.ArgumentParser:
    task = NumberTranslation()
    result = cli.parser(
        __doc__.splitlines()[0], DEFAULTS, exclude=NumberTranslation.unsupported | {"model"}
    )
    result.add_argument("--limit", type=int, default=task.limit, help="numbers below this")
    result.add_argument(
        "--train_numbers", type=int, default=task.train_numbers, help="training numbers"
    )
    result.add_argument(
        "--test_numbers", type=int, default=task.test_numbers, help="held-out test numbers"
    )
    result.add_argument("--width", type=int, default=128, help="the Transformer's width")
    result.add_argument("--depth", type=int, default=2, help="encoder and decoder blocks each")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    task = NumberTranslation(
        limit=args.limit, train_numbers=args.train_numbers, test_numbers=args.test_numbers
    )
    options = {
        "source_length": task.length,
        "dim": args.width,
        "heads": max(1, args.width // 32),
        "encoder_depth": args.depth,
        "decoder_depth": args.depth,
        "mlp_dim": 2 * args.width,
        "max_length": task.length,
    }
    config = cli.config_from_args(args, DEFAULTS, model_options=options)
    return train_and_evaluate(config, task)


if __name__ == "__main__":
    cli.run(main)

"""Translation between English number words and digits, both ways (`jaxdl.data.numbers`), by an
encoder-decoder Transformer trained with teacher forcing and scored by greedy decoding.

Each example is a source and the target shifted right, side by side as the model's input
i32[B, S + T], with the target as labels i32[B, T] (padding 0, ignored by the loss:
`jaxdl.step.padded_sequences`). Validation and the loop's accuracy are teacher-forced token
accuracy; the test decodes greedily (`jaxdl.generate.greedy_decode`) and reports exact match
(the whole output right, up to its end token) and per-token accuracy against the reference.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from jaxdl import generate
from jaxdl.config import TrainConfig
from jaxdl.data import numbers
from jaxdl.data.device import DeviceDataset
from jaxdl.data.sources import ArrayDataset
from jaxdl.loop import log
from jaxdl.plots.run import save_curves
from jaxdl.step import padded_sequences
from jaxdl.tasks.classification import Classification

if TYPE_CHECKING:
    from jaxdl.build import Run


def as_dataset(pairs: numbers.Pairs) -> ArrayDataset:
    inputs = np.concatenate([pairs.sources, pairs.decoder_inputs()], axis=1).astype(np.uint8)
    return ArrayDataset(inputs, pairs.targets, numbers.VOCABULARY)


def decode_scores(predicted: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per example: exact match (every token up to and including the reference's end token)
    and the share of the reference's tokens predicted right at their position."""
    real = targets != numbers.PAD
    right = (predicted == targets) & real
    return right.sum(1) == real.sum(1), right.sum(1) / real.sum(1)


@dataclasses.dataclass(frozen=True)
class NumberTranslation(Classification):
    """`train_numbers` / `val_numbers` / `test_numbers` disjoint numbers below `limit`, each in
    both directions; sequences padded to `length` tokens."""

    limit: int = 1_000_000
    train_numbers: int = 100_000
    val_numbers: int = 2_000
    test_numbers: int = 5_000
    length: int = 16
    tokens = True
    input_dtype = jnp.int32
    objective = staticmethod(padded_sequences)
    unsupported = frozenset(
        {"dataset", "data_dir", "val_size", "crop_padding", "flip", "flip_tta", "layers",
         "save_predictions", "label_smoothing"}
    )  # fmt: skip

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def numbers(self, config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sizes = (self.train_numbers, self.val_numbers, self.test_numbers)
        train, val, test = numbers.split_numbers(self.limit, sizes, config.seed)
        return train[: config.train_limit], val, test[: config.test_limit]

    def splits(self, config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        return tuple(
            as_dataset(numbers.encode_pairs(split, self.length)) for split in self.numbers(config)
        )

    def describe(self, config: TrainConfig, train, val, test) -> str:
        counts = [len(split) for split in self.numbers(config)]
        return (
            f"number words <-> digits for numbers below {self.limit:,}: {counts[0]:,} train / "
            f"{counts[1]:,} validation / {counts[2]:,} test numbers (disjoint, seed "
            f"{config.seed}), each both ways: {len(train):,} / {len(val):,} / {len(test):,} "
            f"pairs; vocabulary {len(numbers.VOCABULARY)} tokens, sequences of {self.length}"
        )

    def decode(self, state, sources: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Greedy outputs i32[N, length] of the (single-device) `state` for `sources`."""
        variables = {"params": state.params}
        batch_size = min(batch_size, len(sources))
        out = []
        for start in range(0, len(sources), batch_size):
            chunk = sources[start : start + batch_size]
            rows = np.resize(chunk, (batch_size, chunk.shape[1]))  # one shape, one compile
            decoded = generate.greedy_decode(
                state.apply_fn,
                variables,
                jnp.asarray(rows),
                length=self.length,
                start_token=numbers.START,
            )
            out.append(np.asarray(decoded)[: len(chunk)])
        return np.concatenate(out)

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        pairs = numbers.encode_pairs(self.numbers(run.config)[2], self.length)
        predicted = self.decode(run.runner.local_state(state), pairs.sources)
        exact, tokens = decode_scores(predicted, pairs.targets)
        results = {
            "test_accuracy": float(exact.mean()),
            "test_token_accuracy": float(tokens.mean()),
            "test_count": len(exact),
        }
        for name, chosen in (("to_digits", pairs.to_digits), ("to_words", ~pairs.to_digits)):
            results[f"test_exact_match_{name}"] = float(exact[chosen].mean())
        wrong = np.flatnonzero(~exact)[:5]
        results["examples_wrong"] = [
            [numbers.text_of(pairs.sources[i]), numbers.text_of(predicted[i])] for i in wrong
        ]
        return results

    def report(self, results: dict[str, Any]) -> None:
        for source, output in results["examples_wrong"]:
            log(f"wrong: {source!r} -> {output!r}")
        for name, direction in (("to_digits", "words -> digits"), ("to_words", "digits -> words")):
            share = 100 * results[f"test_exact_match_{name}"]
            log(f"test exact match, {direction}: {share:.2f} %")
        log(f"test per-token accuracy: {100 * results['test_token_accuracy']:.2f} %")
        log(f"test accuracy: {100 * results['test_accuracy']:.2f} %")

    def outputs(self, run: Run, state, test_data: DeviceDataset, history) -> None:
        if run.config.plots:
            save_curves(run.rundir.plots, history)

"""Character-level language modelling of Python source (`jaxdl.data.text`): next-character
cross-entropy at every position of fixed-length windows, reported in bits per character.

The corpus is the running interpreter's standard library, split by file. Training and
validation windows are non-overlapping `context`-character pieces of each split's text, so a
window's first characters are predicted with little before them. The headline test figure
reads the test text as language models are usually scored, with sliding windows: windows of
`context` characters every `context / 2`, each scoring only its last half (the first window
all of it), so every character is predicted once, with at least `context / 2` characters
before it; the non-overlapping windows' figure is reported beside it. The unigram and bigram
baselines are counted on the training text and scored on every test character. The step is
every classifier's: the cross-entropy simply runs over positions.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import sysconfig
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import generate
from jaxdl.config import TrainConfig
from jaxdl.data import text
from jaxdl.data.device import DeviceDataset
from jaxdl.data.sources import ArrayDataset
from jaxdl.loop import Evaluator, Selection, log
from jaxdl.losses import softmax_cross_entropy
from jaxdl.plots.curves import plot_bits_per_char
from jaxdl.step import predict
from jaxdl.tasks.classification import Classification, evaluate

if TYPE_CHECKING:
    from jaxdl.build import Run


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The split text: file lists, encoded ids per split, the vocabulary."""

    root: str
    files: dict[str, list[str]]
    ids: dict[str, np.ndarray]
    vocabulary: text.CharVocabulary


@functools.lru_cache(maxsize=2)
def load_corpus(root: str, seed: int) -> Corpus:
    """The standard library under `root` split by file with `seed` and encoded (cached: the
    task reads it for the data, the description and the baselines)."""
    train, val, test = text.split_files(text.stdlib_files(root), seed)
    files = {"train": train, "validation": val, "test": test}
    raw = {split: text.read_text(root, names) for split, names in files.items()}
    vocabulary = text.CharVocabulary.from_text(raw["train"])
    ids = {split: vocabulary.encode(content) for split, content in raw.items()}
    return Corpus(root, files, ids, vocabulary)


@dataclasses.dataclass(frozen=True)
class CharLanguageModel(Classification):
    """Windows of `context` characters; samples continue `prompt` to `context` characters at
    each of `temperatures`; `text_root` (None: the standard library) is the folder of Python
    sources."""

    context: int = 256
    prompt: str = "def "
    temperatures: tuple[float, ...] = (0.5, 1.0)
    text_root: str | None = None
    tokens = True
    input_dtype = jnp.int32
    selection = Selection("val_bits_per_char", "min", fallback="train_loss")
    # one corpus; no images to crop, flip or normalise; no class probabilities to save
    unsupported = frozenset(
        {
            "dataset",
            "data_dir",
            "val_size",
            "crop_padding",
            "flip",
            "flip_tta",
            "layers",
            "save_predictions",
        }
    )

    def options(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"python": sys.version.split()[0]}

    def corpus(self, config: TrainConfig) -> Corpus:
        return load_corpus(self.text_root or sysconfig.get_paths()["stdlib"], config.seed)

    def splits(self, config: TrainConfig) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
        corpus = self.corpus(config)
        names = ("<pad>", "<unknown>", *corpus.vocabulary.characters)
        limits = {"train": config.train_limit, "validation": None, "test": config.test_limit}
        datasets = []
        for split, limit in limits.items():
            inputs, targets = text.windows(corpus.ids[split], self.context)
            datasets.append(ArrayDataset(inputs[:limit], targets[:limit], names))
        return tuple(datasets)

    def describe(self, config: TrainConfig, train, val, test) -> str:
        corpus = self.corpus(config)
        counts = {split: len(files) for split, files in corpus.files.items()}
        chars = {split: len(ids) for split, ids in corpus.ids.items()}
        return (
            f"Python {sys.version.split()[0]} standard library ({corpus.root}): "
            f"{sum(counts.values())} .py files split by file into {counts['train']} train / "
            f"{counts['validation']} validation / {counts['test']} test, "
            f"{chars['train']:,} / {chars['validation']:,} / {chars['test']:,} characters; "
            f"vocabulary {corpus.vocabulary.size} (padding, unknown and the "
            f"{len(corpus.vocabulary.characters)} characters seen 5+ times in training); "
            f"{len(train):,} / {len(val):,} / {len(test):,} windows of {self.context}"
        )

    def num_outputs(self, train: ArrayDataset) -> int:
        return train.num_classes

    def evaluators(self, run: Run) -> list[Evaluator]:
        def validation(state) -> dict[str, float]:
            metrics = evaluate(
                run.runner.evaluate, state, run.val_data, run.config.eval_batch_size, run.preprocess
            )
            return {
                "val_loss": metrics["loss"],
                "val_accuracy": metrics["accuracy"],
                "val_bits_per_char": metrics["loss"] * text.BITS_PER_NAT,
            }

        return [validation]

    def samples(self, run: Run, state) -> dict[str, str]:
        """`prompt` continued to `context` characters at each temperature (top-k off)."""
        vocabulary = self.corpus(run.config).vocabulary
        prompt = jnp.asarray(vocabulary.encode(self.prompt)[None].astype(np.int32))
        variables = {"params": state.params}
        out = {}
        for temperature in self.temperatures:
            ids = generate.sample(
                state.apply_fn,
                variables,
                prompt,
                jax.random.PRNGKey(run.config.seed),
                length=self.context,
                temperature=temperature,
            )
            out[f"{temperature:g}"] = vocabulary.decode(np.asarray(ids[0]))
        return out

    def sliding_bits_per_char(self, run: Run, state) -> float:
        """Bits per character of the test text read by sliding windows (see the module
        docstring), from the single-device `state`."""
        config, stride = run.config, self.context // 2
        ids = self.corpus(config).ids["test"]
        if config.test_limit:  # the same text as the test windows' limit covers
            ids = ids[: config.test_limit * self.context + 1]
        inputs, targets, weights = text.sliding_windows(ids, self.context, stride)

        @jax.jit
        def nats(state, inputs, targets, weights):
            losses = softmax_cross_entropy(predict(state, inputs.astype(jnp.int32)), targets)
            return jnp.sum(losses * weights), jnp.sum(weights)

        size, totals = config.eval_batch_size, []
        for start in range(0, len(inputs), size):
            rows = np.minimum(np.arange(start, start + size), len(inputs) - 1)
            mask = (np.arange(start, start + size) < len(inputs))[:, None]
            totals.append(nats(state, inputs[rows], targets[rows], weights[rows] * mask))
        total, count = np.sum(jax.device_get(totals), axis=0)
        return float(total / count) * text.BITS_PER_NAT

    def test(self, run: Run, state: Any, test_data: DeviceDataset) -> dict[str, Any]:
        config = run.config
        metrics = evaluate(
            run.runner.evaluate, state, test_data, config.eval_batch_size, run.preprocess
        )
        corpus = self.corpus(config)
        baselines = text.ngram_bits_per_char(
            corpus.ids["train"], corpus.ids["test"], corpus.vocabulary.size
        )
        local = run.runner.local_state(state)
        return {
            "test_bits_per_char": self.sliding_bits_per_char(run, local),
            "test_bits_per_char_windows": metrics["loss"] * text.BITS_PER_NAT,
            "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"],
            "test_count": metrics["count"],
            "unigram_bits_per_char": baselines["unigram"],
            "bigram_bits_per_char": baselines["bigram"],
            "samples": self.samples(run, local),
        }

    def report(self, results: dict[str, Any]) -> None:
        for temperature, sample in results["samples"].items():
            log(f"sample at temperature {temperature}: {json.dumps(sample)}")
        log(f"unigram baseline: {results['unigram_bits_per_char']:.3f} bits per character")
        log(f"bigram baseline: {results['bigram_bits_per_char']:.3f} bits per character")
        log(f"test next-character accuracy: {100 * results['test_accuracy']:.2f} %")
        log(
            f"test bits per character, independent {self.context}-character windows: "
            f"{results['test_bits_per_char_windows']:.3f}"
        )
        log(f"test bits per character: {results['test_bits_per_char']:.3f}")

    def outputs(self, run: Run, state, test_data: DeviceDataset, history) -> None:
        if run.config.plots:
            results = run.rundir.read_results()
            baselines = {
                "bigram (test)": results["bigram_bits_per_char"],
                "unigram (test)": results["unigram_bits_per_char"],
            }
            plot_bits_per_char(history, baselines, f"{run.rundir.plots}/bits_per_char.png")

"""Text every machine has without a download: the running interpreter's standard library.

`stdlib_files()` lists the standard library's `.py` files (`sysconfig.get_paths()["stdlib"]`,
without the `test/`, `tests/`, `idle_test/` and `site-packages/` folders), `split_files` splits
them into train / validation / test by file (seeded and stable: the same seed and Python give
the same split), and `CharVocabulary` maps characters to token ids 2..V-1 (0 is padding, 1
stands for characters the training text never had). `windows` cuts an encoded text into the
fixed-length examples a language model trains on. `ngram_bits_per_char` gives the unigram
and bigram baselines.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import sysconfig

import numpy as np

from jaxdl.errors import ConfigError

EXCLUDED_FOLDERS = frozenset({"test", "tests", "idle_test", "site-packages"})
PAD, UNKNOWN = 0, 1


def stdlib_files(root: str | None = None) -> list[str]:
    """Sorted paths (relative to `root`, the standard library by default) of its `.py` files
    outside `EXCLUDED_FOLDERS`."""
    root = root or sysconfig.get_paths()["stdlib"]
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in EXCLUDED_FOLDERS)
        found += [
            os.path.relpath(os.path.join(folder, n), root) for n in names if n.endswith(".py")
        ]
    if not found:
        raise ConfigError(f"no .py files under {root!r}; point --text_root at Python sources.")
    return sorted(found)


def split_files(
    files: list[str], seed: int, fractions: tuple[float, float] = (0.1, 0.1)
) -> tuple[list[str], list[str], list[str]]:
    """(train, validation, test) file lists: a seeded permutation of the sorted list, the first
    `fractions[1]` of it test, the next `fractions[0]` validation."""
    order = np.random.default_rng(seed).permutation(len(files))
    shuffled = [sorted(files)[i] for i in order]
    test = max(1, round(fractions[1] * len(files)))
    val = max(1, round(fractions[0] * len(files)))
    return (
        sorted(shuffled[test + val :]),
        sorted(shuffled[test : test + val]),
        sorted(shuffled[:test]),
    )


def read_text(root: str, files: list[str]) -> str:
    """The files' text joined by blank lines (undecodable bytes replaced)."""
    parts = []
    for name in files:
        with open(os.path.join(root, name), encoding="utf-8", errors="replace") as file:
            parts.append(file.read())
    return "\n\n".join(parts)


@dataclasses.dataclass(frozen=True)
class CharVocabulary:
    """Characters seen at least `min_count` times in the training text, most frequent first,
    as ids 2, 3, ...; everything else is `UNKNOWN` (1)."""

    characters: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str, min_count: int = 5, max_size: int = 256) -> CharVocabulary:
        counts = collections.Counter(text)
        kept = [c for c, n in counts.most_common() if n >= min_count][: max_size - 2]
        return cls(tuple(kept))

    @property
    def size(self) -> int:
        return len(self.characters) + 2

    def encode(self, text: str) -> np.ndarray:
        """uint8[len(text)] token ids (the vocabulary has at most 256 entries)."""
        table = {c: i + 2 for i, c in enumerate(self.characters)}
        return np.fromiter((table.get(c, UNKNOWN) for c in text), np.uint8, len(text))

    def decode(self, ids) -> str:
        names = ("", "\ufffd", *self.characters)
        return "".join(names[int(i)] for i in ids)


def windows(ids: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping examples of an encoded text: inputs uint8[N, length] and next-token
    targets i32[N, length] (the inputs shifted by one); the remainder is dropped."""
    count = (len(ids) - 1) // length
    if count < 1:
        raise ConfigError(f"a text of {len(ids)} tokens has no window of {length + 1} tokens.")
    inputs = ids[: count * length].reshape(count, length)
    targets = ids[1 : count * length + 1].reshape(count, length).astype(np.int32)
    return inputs, targets


def sliding_windows(
    ids: np.ndarray, length: int, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of `length` tokens every `stride` tokens, so that each scored next-token target
    has at least `length - stride` tokens before it in its window: inputs uint8[N, length],
    targets i32[N, length] and weights f32[N, length], 1 where a target is scored (every
    position of the first window, the last `stride` of each later one). Every target up to
    the last whole window is scored exactly once."""
    if not 0 < stride <= length:
        raise ConfigError(f"the stride must lie in 1..{length} (the window), got {stride}.")
    count = (len(ids) - 1 - length) // stride + 1
    if count < 1:
        raise ConfigError(f"a text of {len(ids)} tokens has no window of {length + 1} tokens.")
    starts = np.arange(count)[:, None] * stride + np.arange(length)[None, :]
    weights = np.zeros((count, length), np.float32)
    weights[:, length - stride :] = 1.0
    weights[0] = 1.0
    return ids[starts], ids[starts + 1].astype(np.int32), weights


def ngram_bits_per_char(train: np.ndarray, test: np.ndarray, vocab_size: int) -> dict[str, float]:
    """Bits per character on `test` of the unigram and bigram models counted on `train` (token
    ids), with add-one (Laplace) smoothing so no test character has probability zero."""
    unigram = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    unigram /= unigram.sum()
    pairs = np.zeros((vocab_size, vocab_size), np.float64)
    np.add.at(pairs, (train[:-1], train[1:]), 1.0)
    pairs += 1.0
    pairs /= pairs.sum(1, keepdims=True)
    test = test.astype(np.int64)
    return {
        "unigram": float(-np.mean(np.log2(unigram[test]))),
        "bigram": float(-np.mean(np.log2(pairs[test[:-1], test[1:]]))),
    }


BITS_PER_NAT = 1.0 / math.log(2.0)

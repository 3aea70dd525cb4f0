"""A translation task with real structure, generated: English number words and digits.

"three hundred and four" <-> "3 0 4", for every number below `limit` (a million by default),
in British usage ("and" after the hundreds, hyphens in 21..99). Words, hyphens and digits are
tokens of one shared vocabulary; a direction token opens each source. `split_numbers` draws
disjoint train / validation / test sets of numbers with a seed, so no test number, in either
direction, is ever seen in training.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SPECIAL = ("<pad>", "<start>", "<end>", "<to digits>", "<to words>")
PAD, START, END, TO_DIGITS, TO_WORDS = range(len(SPECIAL))
VOCABULARY = (*SPECIAL, *[str(d) for d in range(10)], *ONES, *TENS[2:], "-", "hundred",
              "thousand", "and")  # fmt: skip
TOKEN_IDS = {token: index for index, token in enumerate(VOCABULARY)}


def _below_thousand(n: int) -> list[str]:
    words = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [ONES[hundreds], "hundred"]
        if rest:
            words.append("and")
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words += [TENS[tens], "-", ONES[ones]] if ones else [TENS[tens]]
    elif rest or not hundreds:
        words.append(ONES[rest])
    return words


def number_words(n: int) -> list[str]:
    """The English words of 0 <= n < 10**6 as tokens: 304 -> three hundred and four; 1005 ->
    one thousand and five; 21 -> twenty - one."""
    if not 0 <= n < 10**6:
        raise ValueError(f"number_words takes 0 <= n < 1,000,000, got {n}")
    thousands, rest = divmod(n, 1000)
    if not thousands:
        return _below_thousand(rest)
    words = [*_below_thousand(thousands), "thousand"]
    if rest and rest < 100:
        words.append("and")  # one thousand and five
    if rest:
        words += _below_thousand(rest)
    return words


def text_of(tokens) -> str:
    """Tokens (or ids) as text, up to the first end token: words joined by spaces, hyphens
    and digits written tight."""
    names = [VOCABULARY[t] if isinstance(t, (int, np.integer)) else t for t in tokens]
    if "<end>" in names:
        names = names[: names.index("<end>")]
    names = [t for t in names if t not in SPECIAL]
    out = ""
    for token in names:
        tight = token == "-" or out.endswith("-") or (token.isdigit() and out[-1:].isdigit())
        out += token if tight or not out else " " + token
    return out


def split_numbers(limit: int, sizes: tuple[int, int, int], seed: int) -> tuple[np.ndarray, ...]:
    """Disjoint (train, validation, test) sets of numbers below `limit` of the given sizes,
    drawn with `seed`."""
    if sum(sizes) > limit:
        raise ValueError(
            f"{sum(sizes):,} numbers asked for, but only {limit:,} are below {limit:,}"
        )
    order = np.random.default_rng(seed).permutation(limit)
    test, val = order[: sizes[2]], order[sizes[2] : sizes[2] + sizes[1]]
    train = order[sizes[2] + sizes[1] : sum(sizes)]
    return np.sort(train), np.sort(val), np.sort(test)


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Encoded translation pairs: `sources` i32[N, S] (direction token, then the tokens, then
    end, padded), `targets` i32[N, T] (the tokens then end, padded) and the numbers and
    directions they came from."""

    sources: np.ndarray
    targets: np.ndarray
    numbers: np.ndarray
    to_digits: np.ndarray

    def decoder_inputs(self) -> np.ndarray:
        """The targets shifted right behind a start token: what the decoder reads."""
        starts = np.full((len(self.targets), 1), START, self.targets.dtype)
        return np.concatenate([starts, self.targets[:, :-1]], axis=1)


def encode_pairs(numbers: np.ndarray, length: int = 16) -> Pairs:
    """Both directions of every number: words -> digits and digits -> words."""
    sources, targets, directions = [], [], []
    for n in numbers:
        words = [TOKEN_IDS[w] for w in number_words(int(n))]
        digits = [TOKEN_IDS[d] for d in str(int(n))]
        for to_digits, (source, target) in ((True, (words, digits)), (False, (digits, words))):
            sources.append([TO_DIGITS if to_digits else TO_WORDS, *source, END])
            targets.append([*target, END])
            directions.append(to_digits)
    longest = max(max(map(len, sources)), max(map(len, targets)))
    if longest > length:
        raise ValueError(f"sequences of {longest} tokens do not fit length {length}")
    pad = lambda rows: np.array([r + [PAD] * (length - len(r)) for r in rows], np.int32)
    return Pairs(pad(sources), pad(targets), np.repeat(numbers, 2), np.array(directions))

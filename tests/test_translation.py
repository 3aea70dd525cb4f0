"""The number-translation data (English words, disjoint seeded splits, encoding), its scoring,
and a tiny end-to-end run of `experiments.translate`."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdl.data import numbers
from jaxdl.tasks.translation import decode_scores


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (304, "three hundred and four"),
        (1005, "one thousand and five"),
        (1100, "one thousand one hundred"),
        (21021, "twenty-one thousand and twenty-one"),
        (700020, "seven hundred thousand and twenty"),
        (999999, "nine hundred and ninety-nine thousand nine hundred and ninety-nine"),
    ],
)
def test_number_words_are_british_english(n, words):
    assert numbers.text_of(numbers.number_words(n)) == words


def test_every_number_has_distinct_words_that_fit():
    seen = {tuple(numbers.number_words(n)) for n in range(0, 10**6, 7)}
    assert len(seen) == len(range(0, 10**6, 7))
    with pytest.raises(ValueError, match="0 <= n < 1,000,000"):
        numbers.number_words(10**6)


def test_splits_are_disjoint_seeded_and_stable():
    train, val, test = numbers.split_numbers(1000, (800, 100, 100), seed=1)
    assert not set(train) & set(test) and not set(train) & set(val) and not set(val) & set(test)
    again = numbers.split_numbers(1000, (800, 100, 100), seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    with pytest.raises(ValueError, match="1,001 numbers asked for"):
        numbers.split_numbers(1000, (801, 100, 100), seed=1)


def test_pairs_go_both_ways_and_the_decoder_reads_the_shifted_target():
    pairs = numbers.encode_pairs(np.array([304]))
    assert pairs.sources[0, 0] == numbers.TO_DIGITS and pairs.sources[1, 0] == numbers.TO_WORDS
    assert numbers.text_of(pairs.sources[0, 1:]) == "three hundred and four"
    assert numbers.text_of(pairs.targets[0]) == "304"
    assert numbers.text_of(pairs.targets[1]) == "three hundred and four"
    shifted = pairs.decoder_inputs()
    assert shifted[0, 0] == numbers.START
    np.testing.assert_array_equal(shifted[:, 1:], pairs.targets[:, :-1])


def test_exact_match_ignores_what_follows_the_end_token():
    target = np.array([[5, 6, numbers.END, 0, 0]])
    right = np.array([[5, 6, numbers.END, 9, 9]])
    one_off = np.array([[5, 7, numbers.END, 0, 0]])
    assert decode_scores(right, target)[0][0] and decode_scores(right, target)[1][0] == 1.0
    exact, tokens = decode_scores(one_off, target)
    assert not exact[0] and tokens[0] == pytest.approx(2 / 3)


def test_tiny_translation_run_learns_above_chance(tmp_path, capsys):
    from experiments import translate

    results = translate.main(
        ["--epochs", "3", "--train_numbers", "4000", "--test_numbers", "100", "--width", "32",
         "--depth", "1", "--lr", "5e-3", "--workdir", str(tmp_path), "--quiet", "--no-plots"]
    )  # fmt: skip
    # chance per token is 1 / 47; teacher-forced learning gets the tokens' syntax first
    assert results["test_token_accuracy"] > 0.3
    out = capsys.readouterr().out
    assert "test exact match, words -> digits: " in out
    assert out.strip().splitlines()[-1].startswith("test accuracy: ")

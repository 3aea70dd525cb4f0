"""The character language model's data (standard-library corpus, split by file, vocabulary,
windows, n-gram baselines) and a tiny end-to-end run of `experiments.char_lm`."""

from __future__ import annotations

import json
import math
import os
import shutil
import sysconfig

import numpy as np
import pytest

from jaxdl.data import text
from jaxdl.errors import ConfigError


def test_stdlib_files_leave_out_tests_and_site_packages():
    files = text.stdlib_files()
    assert "os.py" in files and "json/decoder.py" in files
    assert not [f for f in files if set(f.split(os.sep)[:-1]) & text.EXCLUDED_FOLDERS]
    assert all(f.endswith(".py") for f in files)


def test_split_is_by_file_seeded_and_stable():
    files = [f"m{i}.py" for i in range(100)]
    train, val, test = text.split_files(files, seed=3)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert text.split_files(list(reversed(files)), seed=3) == (train, val, test)  # order-free
    assert text.split_files(files, seed=4)[2] != test


def test_vocabulary_round_trips_and_marks_unknown_characters():
    vocabulary = text.CharVocabulary.from_text("aaaaabbbbbc" * 3, min_count=3)
    assert vocabulary.characters == ("a", "b", "c")
    rare = text.CharVocabulary.from_text("aaaaabbbbbc", min_count=5)
    ids = rare.encode("abcz")
    np.testing.assert_array_equal(ids, [2, 3, text.UNKNOWN, text.UNKNOWN])
    assert rare.decode(rare.encode("abba")) == "abba"


def test_windows_are_inputs_and_next_character_targets():
    inputs, targets = text.windows(np.arange(10, dtype=np.uint8), 4)
    np.testing.assert_array_equal(inputs, [[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(targets, [[1, 2, 3, 4], [5, 6, 7, 8]])
    with pytest.raises(ConfigError, match="has no window of 5 tokens"):
        text.windows(np.arange(4, dtype=np.uint8), 4)


def test_sliding_windows_score_every_target_once_with_context():
    ids = np.arange(20, dtype=np.uint8)
    inputs, targets, weights = text.sliding_windows(ids, 8, 4)
    np.testing.assert_array_equal(inputs[:, 0], [0, 4, 8])
    np.testing.assert_array_equal(targets, inputs + 1)
    scored = np.sort(targets[weights == 1])
    np.testing.assert_array_equal(scored, np.arange(1, 17))  # each once, up to the last window
    # after the first window, each scored target has at least 4 tokens before it in its window
    assert weights[1:, :4].sum() == 0 and weights[0].all()
    with pytest.raises(ConfigError, match="the stride must lie in 1..8"):
        text.sliding_windows(ids, 8, 9)


def test_ngram_baselines_match_hand_counts():
    train = np.array([2, 3, 2, 3, 2, 3])  # "ababab" over a vocabulary of 4 ids
    test = np.array([2, 3])
    result = text.ngram_bits_per_char(train, test, 4)
    unigram = np.array([1, 1, 4, 4]) / 10  # counts + 1
    assert result["unigram"] == pytest.approx(-np.mean(np.log2(unigram[[2, 3]])))
    # bigram: after 2, the counts are {3: 3} + 1 each -> p(3 | 2) = 4 / 7
    assert result["bigram"] == pytest.approx(-math.log2(4 / 7))


@pytest.fixture
def small_corpus(tmp_path):
    """Forty of the standard library's modules, a corpus that trains in seconds."""
    root = sysconfig.get_paths()["stdlib"]
    names = [f for f in text.stdlib_files() if os.sep not in f][:40]
    for name in names:
        shutil.copy(os.path.join(root, name), tmp_path / name)
    return str(tmp_path)


def test_tiny_char_lm_learns_below_the_unigram_baseline(small_corpus, tmp_path, capsys):
    from experiments import char_lm

    results = char_lm.main(
        ["--text_root", small_corpus, "--epochs", "3", "--train_limit", "512", "--context", "64",
         "--batch_size", "16", "--lr", "1e-2", "--width", "64", "--depth", "1",
         "--workdir", str(tmp_path / "run"), "--quiet", "--no-plots"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "Python 3." in out and "split by file into" in out
    assert results["test_bits_per_char"] < results["unigram_bits_per_char"]
    # reading with context (sliding windows) does not lose against independent windows
    assert results["test_bits_per_char"] <= results["test_bits_per_char_windows"] + 0.05
    assert out.strip().splitlines()[-1].startswith("test bits per character: ")
    assert set(results["samples"]) == {"0.5", "1"}
    assert all(s.startswith("def ") and len(s) == 64 for s in results["samples"].values())
    saved = json.load(open(tmp_path / "run" / "results.json"))
    assert saved["bigram_bits_per_char"] < saved["unigram_bits_per_char"]

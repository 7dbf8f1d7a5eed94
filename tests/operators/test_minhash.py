"""MinHash signatures and LSH bands against datasketch itself (no Ray)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from operators.minhash import (
    MinHashConfig,
    band_keys,
    exact_key,
    normalize_text,
    optimal_param,
    shingles,
    signatures,
)

TEXTS = [
    "What color is the circle in the image? Answer with a single word. red",
    "Which color does the circle shown in this image have? red",
    "",
    "<image>\nHow many shapes are there?  3",
    "a b c d e f g h i j k l m n o p",
]


@pytest.mark.parametrize(
    "config",
    [
        MinHashConfig(),
        MinHashConfig(unit="word", ngram=1, num_perm=64, seed=3),
        MinHashConfig(unit="char", ngram=5, num_perm=32, seed=11),
    ],
)
def test_signatures_equal_datasketch(config):
    sigs = signatures(TEXTS, config)
    for text, sig in zip(TEXTS, sigs, strict=True):
        reference = MinHash(num_perm=config.num_perm, seed=config.seed)
        reference.update_batch(shingles(text, config.unit, config.ngram))
        np.testing.assert_array_equal(sig, reference.hashvalues)


@pytest.mark.parametrize("threshold", [0.2, 0.35, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("num_perm", [32, 128])
def test_optimal_param_equals_datasketch(threshold, num_perm):
    assert optimal_param(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def _edited(words: list[str], rng: np.random.Generator, rate: float) -> str:
    out = list(words)
    for _ in range(max(1, int(len(out) * rate))):
        out[int(rng.integers(len(out)))] = f"w{int(rng.integers(10_000))}"
    return " ".join(out)


def test_band_collisions_equal_datasketch_lsh_candidates():
    rng = np.random.default_rng(0)
    base = [[f"t{int(x)}" for x in rng.integers(0, 300, 40)] for _ in range(40)]
    texts = [" ".join(b) for b in base] + [_edited(b, rng, 0.15) for b in base[:20]]
    config = MinHashConfig(num_perm=64)
    bands, rows = config.band_rows()
    sigs = signatures(texts, config)
    keys = band_keys(sigs, bands, rows)
    ours = {
        (i, j)
        for i, j in itertools.combinations(range(len(texts)), 2)
        if np.any(keys[i] == keys[j])
    }
    lsh = MinHashLSH(num_perm=64, params=(bands, rows))
    hashes = []
    for k, text in enumerate(texts):
        m = MinHash(num_perm=64, seed=config.seed)
        m.update_batch(shingles(text, config.unit, config.ngram))
        lsh.insert(k, m)
        hashes.append(m)
    theirs = {(min(k, j), max(k, j)) for k, m in enumerate(hashes) for j in lsh.query(m) if j != k}
    assert ours == theirs
    assert {(i, 40 + i) for i in range(20)} <= ours  # the edited copies are found


def test_exact_key_ignores_case_punctuation_and_placeholders():
    assert exact_key("<image>\nWhat is it?", "A cat.") == exact_key("what is it", "a cat")
    assert exact_key("What is it?", "A cat.") != exact_key("What is it?", "A dog.")
    assert normalize_text("<video> Hello,  World!") == "hello world"

"""MinHash signatures, exact keys and LSH bands against datasketch and hashlib (no Ray)."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.minhash import (
    MinHashConfig,
    band_keys,
    exact_key,
    normalize_text,
    optimal_param,
    row_text,
    row_text_arrays,
    shingles,
    signatures,
    text_keys,
)
from operators.minhash_kernel import normalize_many, sha1_words
from operators.schema import MESSAGE_TYPE

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


MIXED = [
    "Café crème? <image> Ünïcödé ΣΑΣ ends with Σ.",
    "tabs\tand\nnew lines\x1c and NUL\x00inside",
    "",
    "!!!",
    "<video>",
    "x",
] + TEXTS


@pytest.mark.parametrize("unit,ngram", [("word", 2), ("word", 5), ("char", 3)])
def test_signatures_equal_datasketch_on_unicode_and_odd_text(unit, ngram):
    config = MinHashConfig(unit=unit, ngram=ngram, num_perm=64)
    for texts in (MIXED, [t for t in MIXED if t.isascii()]):  # the str and the bytes paths
        for text, sig in zip(texts, signatures(texts, config), strict=True):
            reference = MinHash(num_perm=64, seed=config.seed)
            reference.update_batch(shingles(text, unit, ngram))
            np.testing.assert_array_equal(sig, reference.hashvalues)


def test_text_keys_equal_per_row_signature_and_exact_key():
    questions, answers = MIXED, MIXED[::-1]
    sigs, exact = text_keys(questions, answers, MinHashConfig())
    joined = signatures(
        [f"{q} {a}" for q, a in zip(questions, answers, strict=True)], MinHashConfig()
    )
    np.testing.assert_array_equal(sigs, joined)
    expected = [exact_key(q, a) for q, a in zip(questions, answers, strict=True)]
    assert exact.tolist() == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="aZ é_9!.<>\n\t\x00Σ", max_size=20), max_size=8))
def test_normalize_many_equals_normalize_text(texts):
    data, starts, ends = normalize_many(texts)
    got = [bytes(data[s:e]).decode("utf-8") for s, e in zip(starts, ends, strict=True)]
    assert got == [normalize_text(t) for t in texts]


def test_sha1_kernel_equals_hashlib_across_block_boundaries():
    rng = np.random.default_rng(0)
    messages = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in [*range(130), 1000]]
    data = np.frombuffer(b"".join(messages), dtype=np.uint8)
    ends = np.cumsum([len(m) for m in messages])
    words = sha1_words(data, ends - [len(m) for m in messages], ends)
    for message, row in zip(messages, words, strict=True):
        assert row.astype(">u4").tobytes() == hashlib.sha1(message).digest()


def test_row_text_arrays_equal_row_text():
    rows = [
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], None),
        ([{"role": "user", "content": "q1"}, {"role": "user", "content": None}], "given"),
        ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "r1"}], None),
        ([{"role": "assistant", "content": "r1"}, {"role": "assistant", "content": "r2"}], None),
        ([{"role": "user", "content": "only"}], None),
        ([], None),
    ]
    messages = pa.array([m for m, _ in rows], pa.list_(MESSAGE_TYPE))
    questions, answers = row_text_arrays(messages, pa.array([a for _, a in rows], pa.string()))
    expected = [row_text(m, a) for m, a in rows]
    assert list(zip(questions.to_pylist(), answers.to_pylist(), strict=True)) == expected

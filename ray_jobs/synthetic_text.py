"""Text-only pools with known near-duplicate clusters, for the dedup benchmark and tests.

Rows are instruction/answer pairs of 20-120 words drawn from a Zipf-like vocabulary of
pseudo-words. A share of rows copy an earlier original: exactly, or with 5-20% of the words
replaced, dropped or inserted (the issue's word edits). Each row's `cluster` (the index of
its original, or its own) is the ground truth. Written as Parquet shards with ROW_SCHEMA so
the dedup job reads them like an ingested pool.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from operators.formats.writers import write_parquet_atomic
from operators.schema import MESSAGE_TYPE, ROW_SCHEMA

__all__ = ["generate_text_rows", "write_text_pool"]

SYLLABLES = ("ka", "lo", "mi", "ten", "ra", "su", "vel", "no", "dri", "pa", "zu", "qui", "ber")


def _vocabulary(size: int, rng: np.random.Generator) -> np.ndarray:
    words = set()
    while len(words) < size:
        count = int(rng.integers(1, 4))
        words.add("".join(rng.choice(SYLLABLES, count)) + str(int(rng.integers(0, 10))))
    return np.array(sorted(words))


def _edit(words: list[str], rng: np.random.Generator, vocab: np.ndarray) -> list[str]:
    out = list(words)
    for _ in range(max(1, int(round(len(out) * rng.uniform(0.05, 0.2))))):
        k = int(rng.integers(0, len(out)))
        op = rng.random()
        if op < 0.5:
            out[k] = str(vocab[int(rng.integers(0, len(vocab)))])
        elif op < 0.75 and len(out) > 5:
            del out[k]
        else:
            out.insert(k, str(vocab[int(rng.integers(0, len(vocab)))]))
    return out


def generate_text_rows(
    n: int, seed: int = 0, dup_rate: float = 0.15, exact_share: float = 0.3, vocab: int = 20000
) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """(questions, answers, cluster, kind): kind is original / exact / word_edit."""
    rng = np.random.default_rng(seed)
    words = _vocabulary(vocab, rng)
    zipf = 1.0 / np.arange(1, vocab + 1) ** 0.8
    zipf /= zipf.sum()
    lengths = rng.integers(20, 121, n)
    tokens = rng.choice(vocab, int(lengths.sum()), p=zipf)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    cluster = np.arange(n)
    kind = ["original"] * n
    texts: list[list[str]] = []
    is_dup = (rng.random(n) < dup_rate) & (np.arange(n) >= 10)
    for i in range(n):
        if is_dup[i]:
            j = int(rng.integers(0, i))
            j = int(cluster[j])  # copy an original, so clusters are stars around it
            cluster[i] = j
            exact = rng.random() < exact_share
            kind[i] = "exact" if exact else "word_edit"
            texts.append(list(texts[j]) if exact else _edit(texts[j], rng, words))
        else:
            texts.append(words[tokens[offsets[i] : offsets[i + 1]]].tolist())
    splits = [max(1, len(t) // 6) for t in texts]
    questions = [" ".join(t[:-s]) for t, s in zip(texts, splits, strict=True)]
    answers = [" ".join(t[-s:]) for t, s in zip(texts, splits, strict=True)]
    return questions, answers, cluster, kind


def _messages(questions: list[str], answers: list[str]) -> pa.Array:
    n = len(questions)
    roles = pa.array(["user", "assistant"] * n)
    contents = pa.array([x for pair in zip(questions, answers, strict=True) for x in pair])
    structs = pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE_TYPE))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), structs)


def write_text_pool(
    n: int, out: str, seed: int = 0, shard_rows: int = 50_000, generate=None, **kwargs
) -> dict:
    """Write `out/pool/part-NNNNN.parquet` (ROW_SCHEMA) and `out/truth.parquet`; counts.

    `generate` makes the rows (default `generate_text_rows`; ray_jobs/synthetic_templated.py
    has the templated generator)."""
    questions, answers, cluster, kind = (generate or generate_text_rows)(n, seed, **kwargs)
    ids = [f"txt-{i:08d}" for i in range(n)]
    for shard, start in enumerate(range(0, n, shard_rows)):
        end = min(n, start + shard_rows)
        columns = {
            "id": pa.array(ids[start:end]),
            "source": pa.array(["synthetic_text"] * (end - start)),
            "media_type": pa.array(["text"] * (end - start)),
            "media": pa.array([[]] * (end - start), pa.list_(pa.string())),
            "video_id": pa.nulls(end - start, pa.string()),
            "messages": _messages(questions[start:end], answers[start:end]),
            "category": pa.nulls(end - start, pa.string()),
            "answer": pa.array(answers[start:end]),
            "extra": pa.array(["{}"] * (end - start)),
            "origin": pa.array([f"synthetic:{i}" for i in range(start, end)]),
        }
        table = pa.table(columns).cast(ROW_SCHEMA)
        write_parquet_atomic(table, os.path.join(out, "pool", f"part-{shard:05d}.parquet"))
    truth = pa.table({"id": ids, "cluster": cluster, "kind": kind})
    write_parquet_atomic(truth, os.path.join(out, "truth.parquet"))
    return {"rows": n, "kinds": {k: kind.count(k) for k in ("original", "exact", "word_edit")}}

"""Buckets to edges: same components as brute force; media and text verification (no Ray)."""

from __future__ import annotations

import numpy as np

from operators.lsh import (
    WHY_EXACT,
    WHY_NEAR,
    bucket_edges,
    estimated_jaccard,
    fingerprint_table,
    text_bucket_edges,
    verified_bucket_edges,
)
from operators.minhash import MinHashConfig, signatures
from operators.phash import HASH_WORDS, MediaHashConfig
from operators.union_find import components_local


def _labels(nodes: np.ndarray, edges: dict) -> dict[int, int]:
    found, roots = components_local(np.stack([edges["hi"], edges["lo"]], axis=1))
    label = dict(zip(found.tolist(), roots.tolist(), strict=True))
    return {int(n): label.get(int(n), int(n)) for n in nodes}


def test_bucket_edges_connect_exactly_the_rows_sharing_a_key():
    rng = np.random.default_rng(0)
    nodes = rng.permutation(10_000)[:3000].astype(np.int64) * 7
    keys = rng.integers(0, 2500, len(nodes)).astype(np.uint64)  # many buckets of 1-5 rows
    labels = _labels(nodes, bucket_edges({"key": keys, "node": nodes}))
    for key in np.unique(keys):
        members = nodes[keys == key]
        assert {labels[int(n)] for n in members} == {int(members.min())}


def _table(nodes, kinds, thumbs) -> dict:
    n = len(nodes)
    part = {"node": np.array(nodes), "kind": np.array(kinds, np.int8), "thumb": thumbs}
    part.update({f"w{k}": np.zeros(n, np.uint64) for k in range(HASH_WORDS)})
    return fingerprint_table([part])


def test_verified_edges_follow_the_copy_rules():
    config = MediaHashConfig()
    rng = np.random.default_rng(1)
    base = rng.integers(0, 240, config.thumb_size())
    thumbs = np.stack(
        [base, base + 1, base + 15, base, base, base, base]  # 1: copy, 2: too far, 3: video
    ).astype(np.uint8)
    # nodes 10-16 in the table (16 unreadable); nodes 20, 21 are text-only rows.
    table = _table([10, 11, 12, 13, 14, 15, 16], [1, 1, 1, 2, 1, 1, -1], thumbs)
    group = {
        "key": np.array([5, 5, 5, 5, 5, 5, 9, 9], np.uint64),
        "node": np.array([10, 11, 12, 13, 16, 20, 21, 14], np.int64),
    }
    edges = verified_bucket_edges(group, [table], config)
    pairs = set(zip(edges["hi"].tolist(), edges["lo"].tolist(), strict=True))
    assert pairs == {(11, 10)}  # 12 too far, 13 another kind, 16 unreadable, 20 text-only
    text = {"key": np.array([1, 1, 1], np.uint64), "node": np.array([20, 21, 22], np.int64)}
    labels = _labels(text["node"], verified_bucket_edges(text, [table], config))
    assert set(labels.values()) == {20}
    near = {**group, "limit": np.zeros(len(group["key"]))}  # near text: the same media only
    edges = verified_bucket_edges(near, [table], config)
    assert len(edges["hi"]) == 0
    same = {"key": np.array([3, 3], np.uint64), "node": np.array([14, 15]), "limit": np.zeros(2)}
    assert set(verified_bucket_edges(same, [table], config)["hi"].tolist()) == {15}


def _signature_block(texts: list[str], nodes: np.ndarray, config: MinHashConfig) -> dict:
    sigs = signatures(texts, config)
    order = np.argsort(nodes)
    return {"node": nodes[order], "sig8": sigs.astype(np.uint8)[order], "sig": sigs[order]}


def _texts(rng, count: int, words: int = 60) -> list[str]:
    vocab = [f"w{k}" for k in range(400)]
    return [" ".join(rng.choice(vocab, words)) for _ in range(count)]


def test_estimated_jaccard_matches_the_full_signature_estimate():
    rng = np.random.default_rng(2)
    config = MinHashConfig(ngram=1)
    base = _texts(rng, 50)
    edited = [" ".join(t.split()[: int(rng.integers(10, 60))]) for t in base]  # J 0.15-1
    nodes = rng.permutation(1000)[:100].astype(np.int64)
    # two blocks, as the dedup job hands them over (each sorted by node)
    blocks = [
        _signature_block(base, nodes[:50], config),
        _signature_block(edited, nodes[50:], config),
    ]
    est = estimated_jaccard(blocks, nodes[:50], nodes[50:])
    full = (signatures(base, config) == signatures(edited, config)).mean(axis=1)
    assert np.abs(est - full).mean() < 0.01 and np.abs(est - full).max() < 0.05
    assert full.min() < 0.4 and full.max() > 0.9  # the pairs span the range


def test_text_edges_keep_only_candidates_above_the_threshold():
    rng = np.random.default_rng(3)
    config = MinHashConfig(ngram=1)
    base = _texts(rng, 1, words=80)[0].split()
    # rows 0-3 share one bucket; 1 keeps 95% of 0's words, 2 keeps 40%, 3 is unrelated
    texts = [" ".join(base), " ".join(base[:76]), " ".join(base[:32]), _texts(rng, 1)[0]]
    nodes = np.array([10, 11, 12, 13], np.int64)
    exact_sets = [set(t.split()) for t in texts]
    jac = {
        (i, j): len(exact_sets[i] & exact_sets[j]) / len(exact_sets[i] | exact_sets[j])
        for i in range(4)
        for j in range(i)
    }
    block = _signature_block(texts, nodes, config)
    group = {
        "key": np.array([7, 7, 7, 7, 9, 9], np.uint64),
        "node": np.array([10, 11, 12, 13, 13, 12], np.int64),
        "exact": np.array([0, 0, 0, 0, 1, 1], np.uint8),  # 12 and 13 share an exact key
    }
    edges = text_bucket_edges(group, [block], threshold=0.7)
    got = {(h, lo): s for h, lo, s in zip(edges["hi"], edges["lo"], edges["sim"], strict=True)}
    assert jac[(1, 0)] > 0.9 and jac[(2, 0)] < 0.45 and jac[(2, 1)] < 0.5 and jac[(3, 0)] < 0.2
    assert set(got) == {(11, 10), (13, 12)}  # 12-10 / 12-11 / 13-x proposed, not similar
    assert abs(got[(11, 10)] - jac[(1, 0)]) < 0.1 and got[(13, 12)] == 1.0
    assert edges["why"].tolist() == [WHY_NEAR, WHY_EXACT]
    unverified = bucket_edges(group)  # the star of every candidate: all four rows joined
    assert set(_labels(nodes, unverified).values()) == {10}

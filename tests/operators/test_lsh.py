"""Buckets to edges: same components as brute force; media verification rules (no Ray)."""

from __future__ import annotations

import numpy as np

from operators.lsh import bucket_edges, fingerprint_table, verified_bucket_edges
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

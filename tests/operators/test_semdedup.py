"""SemDeDup edges: exactly the in-cluster pairs at or above the cosine threshold (no Ray)."""

from __future__ import annotations

import itertools

import numpy as np

from operators.lsh import WHY_SEMANTIC
from operators.semdedup import joint_vectors, semantic_bucket_edges


def test_edges_are_the_in_cluster_pairs_above_the_threshold():
    rng = np.random.default_rng(0)
    base = joint_vectors(rng.normal(size=(40, 16)), None, None)
    scale = rng.uniform(0.02, 0.12, (40, 1))
    noisy = joint_vectors(base + scale * rng.normal(size=base.shape), None, None)
    vectors = np.concatenate([base, noisy])  # pairs (k, 40 + k) at cosine ~0.9-0.99
    nodes = rng.permutation(10_000)[:80].astype(np.int64)
    keys = rng.integers(0, 3, 80).astype(np.uint64)  # three k-means clusters
    order = np.argsort(nodes)
    block = {"node": nodes[order], "vec": vectors[order]}
    edges = semantic_bucket_edges({"key": keys, "node": nodes}, [block], 0.93, chunk=7)
    cos = vectors @ vectors.T
    expected = {
        (max(nodes[i], nodes[j]), min(nodes[i], nodes[j]))
        for i, j in itertools.combinations(range(80), 2)
        if keys[i] == keys[j] and cos[i, j] >= 0.93
    }
    got = dict(
        zip(zip(edges["hi"].tolist(), edges["lo"].tolist(), strict=True), edges["sim"], strict=True)
    )
    assert len(expected) >= 5 and set(got) == expected
    pos = {int(n): k for k, n in enumerate(nodes)}
    assert all(abs(s - cos[pos[h], pos[lo]]) < 1e-5 for (h, lo), s in got.items())
    assert set(edges["why"].tolist()) == {WHY_SEMANTIC}
    across = [(i, j) for i, j in itertools.combinations(range(80), 2) if cos[i, j] >= 0.93]
    assert len(across) > len(expected)  # some similar pairs sit in different clusters


def test_joint_vectors_keep_text_only_rows_apart_from_rows_with_pictures():
    rng = np.random.default_rng(1)
    text = rng.normal(size=(4, 8))
    text[1] = text[0]  # the same text, twice with a picture and twice without
    text[3] = text[2] = text[0]
    visual = rng.normal(size=(4, 8))
    visual[1] = visual[0]
    joint = joint_vectors(text, visual, np.array([True, True, False, False]))
    cos = joint @ joint.T
    assert np.allclose(np.linalg.norm(joint, axis=1), 1)
    assert cos[0, 1] > 0.999 and cos[2, 3] > 0.999  # same text and picture; text-only pair
    assert abs(cos[0, 2] - np.sqrt(0.5)) < 1e-5  # with vs without a picture

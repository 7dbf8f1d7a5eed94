"""The dedup job: synthetic-pool ground truth, a brute-force reference, reruns."""

from __future__ import annotations

import itertools
import shutil
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest

from operators.minhash import MinHashConfig, row_text, shingles
from operators.union_find import components_local
from ray_jobs.dedup import DedupConfig, dedup
from ray_jobs.ingest import IngestConfig, ingest
from ray_jobs.synthetic_text import write_text_pool


@pytest.fixture(scope="module")
def pool_run(ray_session, small_pool, tmp_path_factory):
    run = tmp_path_factory.mktemp("dedup_run")
    ingest(IngestConfig(str(small_pool / "pool.jsonl"), str(run)))
    counts = dedup(DedupConfig(run=str(run), partitions=3))
    return run, counts


def _found(rows: dict, truth: list[dict], kind: str) -> float:
    pairs = [
        (t["id"], t["dup_of"])
        for t in truth
        if (t["dup_kind"] or t["defect"]) == kind and t["id"] in rows and t["dup_of"] in rows
    ]
    assert pairs, kind
    return np.mean([rows[a]["dup_cluster"] == rows[b]["dup_cluster"] for a, b in pairs])


def test_pool_duplicates_found_with_one_survivor_each(pool_run, small_pool):
    run, counts = pool_run
    rows = {r["id"]: r for r in pq.read_table(run / "dedup").to_pylist()}
    truth = pq.read_table(small_pool / "ground_truth.parquet").to_pylist()
    assert counts["rows"] == len(rows) == pq.read_table(run / "pool").num_rows
    assert _found(rows, truth, "exact_dup") == 1.0
    assert _found(rows, truth, "word_edit") >= 0.9
    assert _found(rows, truth, "reworded") >= 0.9
    assert _found(rows, truth, "media_copy") >= 0.6
    clusters = defaultdict(list)
    for r in rows.values():
        clusters[r["dup_cluster"]].append(r)
    pool = {r["id"]: r for r in pq.read_table(run / "pool").to_pylist()}
    for cluster, members in clusters.items():
        keep = [m for m in members if m["dup_keep"]]
        assert [k["id"] for k in keep] == [cluster]  # the survivor names the cluster
        lengths = [
            len(row_text(pool[m["id"]]["messages"], pool[m["id"]]["answer"])[1]) for m in members
        ]
        assert lengths[[m["id"] for m in members].index(cluster)] == max(lengths)
    exact = [r for r in rows.values() if r["dup_reason"] == "exact"]
    assert exact and counts["removed"] == sum(not r["dup_keep"] for r in rows.values())


def test_audit_names_the_matched_row_and_its_similarity(pool_run):
    run, _ = pool_run
    rows = {r["id"]: r for r in pq.read_table(run / "dedup").to_pylist()}
    pool = {r["id"]: r for r in pq.read_table(run / "pool").to_pylist()}
    config = MinHashConfig()
    removed = [r for r in rows.values() if not r["dup_keep"]]
    assert removed and all(r["dup_match"] is None for r in rows.values() if r["dup_keep"])
    errors = []
    for r in removed:
        match = rows[r["dup_match"]]
        assert match["dup_cluster"] == r["dup_cluster"]  # evidence inside its own cluster
        if r["dup_reason"] == "exact":
            assert r["dup_similarity"] == 1.0
            continue
        assert r["dup_similarity"] >= config.threshold
        texts = [
            " ".join(row_text(pool[i]["messages"], pool[i]["answer"]))
            for i in (r["id"], match["id"])
        ]
        a, b = (set(shingles(t, config.unit, config.ngram)) for t in texts)
        errors.append(abs(r["dup_similarity"] - len(a & b) / len(a | b)))
    # the 128-value signature estimate: standard error <= 0.045 at any similarity
    assert errors and np.mean(errors) < 0.05 and np.max(errors) < 0.2


def test_rerun_gives_identical_output(pool_run):
    run, counts = pool_run
    first = pq.read_table(run / "dedup")
    shutil.rmtree(run / "dedup")
    assert dedup(DedupConfig(run=str(run), partitions=5)) == counts
    assert pq.read_table(run / "dedup").equals(first)


def test_text_components_equal_brute_force_jaccard(ray_session, tmp_path):
    write_text_pool(300, str(tmp_path), seed=3, shard_rows=100, dup_rate=0.2)
    config = MinHashConfig(unit="word", ngram=1, num_perm=256, bands=64, rows=4)
    run = tmp_path / "run"
    dedup(
        DedupConfig(
            run=str(run), input=str(tmp_path / "pool"), text=config, near_media=False, partitions=3
        )
    )
    pool = pq.read_table(tmp_path / "pool").to_pylist()
    sets = [set(shingles(" ".join(row_text(r["messages"], r["answer"])))) for r in pool]
    jaccard = {
        (i, j): len(sets[i] & sets[j]) / len(sets[i] | sets[j])
        for i, j in itertools.combinations(range(len(pool)), 2)
    }
    # Pairs sit far from the threshold here (edits keep >= 0.55, unrelated rows < 0.15), where
    # the LSH S-curve is ~1 above and ~0 below, so the clusters must match exactly.
    assert not any(0.15 < v < 0.55 for v in jaccard.values())
    edges = np.array([p for p, v in jaccard.items() if v >= 0.55])
    nodes, roots = components_local(edges)
    expected = dict(zip(nodes.tolist(), roots.tolist(), strict=True))
    got = {r["id"]: r["dup_cluster"] for r in pq.read_table(run / "dedup").to_pylist()}
    ids = [r["id"] for r in pool]
    groups_expected = defaultdict(set)
    groups_got = defaultdict(set)
    for k, row_id in enumerate(ids):
        groups_expected[expected.get(k, k)].add(row_id)
        groups_got[got[row_id]].add(row_id)
    assert sorted(map(sorted, groups_expected.values())) == sorted(map(sorted, groups_got.values()))

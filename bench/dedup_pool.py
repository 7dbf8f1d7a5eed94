"""Dedup on the synthetic pool against its ground truth: duplicates found per kind, false
removals (split by whether the survivor has the same rendered picture), media-copy recall.

    python bench/dedup_pool.py --lines 3000
    python bench/dedup_pool.py --lines 3000 --semantic 0.9   # SemDeDup edges beside MinHash
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import shutil
import sys
import time

import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from operators.semdedup import SemanticConfig  # noqa: E402
from ray_jobs import synthetic_pool as sp  # noqa: E402
from ray_jobs.dedup import DedupConfig, dedup  # noqa: E402
from ray_jobs.ingest import IngestConfig, ingest  # noqa: E402
from ray_jobs.synth import synthesize  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--out", default="/tmp/mmcurate_bench_dedup_pool")
    parser.add_argument(
        "--semantic", type=float, default=None, help="add SemDeDup edges at this cosine"
    )
    args = parser.parse_args(argv)
    semantic = SemanticConfig()
    if args.semantic is not None:
        semantic = SemanticConfig(enabled=True, threshold=args.semantic)
    pool, run = os.path.join(args.out, "pool"), os.path.join(args.out, "run")
    if not os.path.exists(os.path.join(pool, "ground_truth.parquet")):
        synthesize(args.lines, pool, seed=0, parallel=False)
    ingest(IngestConfig(os.path.join(pool, "pool.jsonl"), run))
    shutil.rmtree(os.path.join(run, "dedup"), ignore_errors=True)
    started = time.time()
    counts = dedup(DedupConfig(run=run, semantic=semantic))
    print(f"dedup {counts['rows']} rows in {time.time() - started:.1f}s: {counts['reasons']}")
    rows = {r["id"]: r for r in pq.read_table(os.path.join(run, "dedup")).to_pylist()}
    truth = {
        t["id"]: t for t in pq.read_table(os.path.join(pool, "ground_truth.parquet")).to_pylist()
    }
    root = {i: truth[i]["dup_of"] or i for i in rows}

    def render_key(i: str) -> str:
        return hashlib.sha1(sp.render(sp._spec(0, int(root[i][4:]))).tobytes()).hexdigest()

    found, total = collections.Counter(), collections.Counter()
    media_found, media_total = collections.Counter(), collections.Counter()
    for i, r in rows.items():
        t = truth[i]
        if t["dup_of"] in rows:
            kind = t["dup_kind"] or "exact_dup"
            total[kind] += 1
            found[kind] += r["dup_cluster"] == rows[t["dup_of"]]["dup_cluster"]
            if kind == "media_copy":
                media = "video" if t["category"] in ("temporal", "static_video") else "image"
                media_total[media] += 1
                media_found[media] += r["media_cluster"] == rows[t["dup_of"]]["media_cluster"]
    print("found in the original's dup_cluster:", {k: f"{found[k]}/{total[k]}" for k in total})
    print(
        "copies in the original's media_cluster:",
        {k: f"{media_found[k]}/{media_total[k]}" for k in media_total},
    )
    clusters = collections.defaultdict(dict)
    for i, r in rows.items():
        if r["media_cluster"] is not None:
            clusters[r["media_cluster"]].setdefault(render_key(i), root[i])
    mixed = [c for c in clusters.values() if len(c) > 1]
    print(
        f"media clusters {len(clusters)}; holding more than one distinct rendered picture "
        f"{len(mixed)} ({sum(len(c) for c in mixed)} distinct pictures in them)"
    )
    for cluster in mixed:
        specs = [sp._spec(0, int(i[4:])) for i in cluster.values()]
        shown = ("category", "word", "font_scale", "dy", "values", "objects", "direction")
        print("   mixed cluster:", [{k: s[k] for k in shown if k in s} for s in specs])
    removed = [r for r in rows.values() if not r["dup_keep"]]
    wrong = [r for r in removed if root[r["id"]] != root[r["dup_cluster"]]]
    same_picture = sum(render_key(r["id"]) == render_key(r["dup_cluster"]) for r in wrong)
    by_semantic = [r for r in removed if r["dup_reason"] == "semantic"]
    print(
        f"removed as semantic {len(by_semantic)}, of which not duplicates by the ground truth "
        f"{sum(root[r['id']] != root[r['dup_cluster']] for r in by_semantic)}"
    )
    print(
        f"removed {len(removed)}, not duplicates by the ground truth {len(wrong)} "
        f"(precision {1 - len(wrong) / max(1, len(removed)):.3f}); "
        f"of those, same rendered picture as the survivor: {same_picture}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

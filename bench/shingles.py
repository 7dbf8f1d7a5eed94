"""Which shingles catch the synthetic pool's near duplicates: exact Jaccard of every duplicate
pair (min / 5th percentile / median per kind) and of distinct pairs, per shingle setting.

    python bench/shingles.py --lines 3000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from operators.minhash import shingles  # noqa: E402
from ray_jobs.synth import synthesize  # noqa: E402

SETTINGS = [("word", 1), ("word", 2), ("word", 3), ("word", 5), ("char", 5)]


def _texts(pool: str) -> dict[str, str]:
    texts = {}
    with open(os.path.join(pool, "pool.jsonl")) as handle:
        for line in handle:
            try:
                record = json.loads(line)
                turns = record["conversations"]
                texts[record["id"]] = f"{turns[0]['value']} {turns[1]['value']}"
            except (ValueError, KeyError, TypeError, IndexError):
                continue
    return texts


def main(argv: list[str] | None = None) -> int:
    import pyarrow.parquet as pq

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--pool", default="/tmp/mmcurate_bench_shingles")
    parser.add_argument("--distinct-sample", type=int, default=1000)
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.pool, "pool.jsonl")):
        synthesize(args.lines, args.pool, seed=0, parallel=False)
    truth = pq.read_table(os.path.join(args.pool, "ground_truth.parquet")).to_pylist()
    texts = _texts(args.pool)
    root = {t["id"]: t["dup_of"] or t["id"] for t in truth if t["id"]}
    for unit, n in SETTINGS:
        sets = {i: set(shingles(t, unit, n)) for i, t in texts.items()}

        def jaccard(a: str, b: str, sets=sets) -> float:
            return len(sets[a] & sets[b]) / max(1, len(sets[a] | sets[b]))

        kinds: dict[str, list[float]] = {}
        for t in truth:
            if t["dup_kind"] in ("reworded", "word_edit") and t["id"] in texts:
                if t["dup_of"] in texts:
                    kinds.setdefault(t["dup_kind"], []).append(jaccard(t["id"], t["dup_of"]))
        sample = list(texts)[: args.distinct_sample]
        distinct = np.array(
            [jaccard(a, b) for a, b in itertools.combinations(sample, 2) if root[a] != root[b]]
        )
        row = {
            "shingles": f"{unit} {n}-grams",
            **{
                k: [
                    round(float(np.min(v)), 2),
                    round(float(np.percentile(v, 5)), 2),
                    round(float(np.median(v)), 2),
                ]
                for k, v in sorted(kinds.items())
            },
            "distinct_pairs_above_0.35": int((distinct > 0.35).sum()),
            "distinct_pairs_above_0.5": int((distinct > 0.5).sum()),
            "distinct_pairs": len(distinct),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

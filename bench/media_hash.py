"""Media hashes on the synthetic pool: Hamming distances of true copies vs distinct pictures.

For every media_copy row of the ground truth: the distance (fraction of bits) between its
hash and its original's. For every original (not a duplicate): the distance to its nearest
other original of the same media type (the pairs a threshold could wrongly merge), split by
whether the two renders are pixel-identical (identical pictures of distinct samples are
copies as far as media go). A threshold separates copies from distinct pictures when it is
above the copies' maximum and below the distinct pairs' minimum; the margin is the gap.

    python bench/media_hash.py --lines 3000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from operators.media import MediaError  # noqa: E402
from operators.phash import KIND_IMAGE, MediaHashConfig, hamming, media_hash  # noqa: E402
from ray_jobs import synthetic_pool as sp  # noqa: E402
from ray_jobs.ingest import IngestConfig, ingest  # noqa: E402
from ray_jobs.synth import synthesize  # noqa: E402


def _hashes(rows: list[dict], config: MediaHashConfig) -> dict[str, tuple[int, np.ndarray]]:
    out = {}
    for row in rows:
        if row["media_type"] in ("image", "video") and row["media"]:
            try:
                out[row["id"]] = media_hash(row["media"][0], row["media_type"], config)
            except MediaError:
                pass
    return out


def _summary(values: np.ndarray) -> str:
    if len(values) == 0:
        return "none"
    q = np.percentile(values, [0, 5, 50, 95, 100])
    return f"n={len(values)} min {q[0]:.3f} p5 {q[1]:.3f} median {q[2]:.3f} p95 {q[3]:.3f} max {q[4]:.3f}"


def distances(pool: str, run: str, config: MediaHashConfig) -> dict:
    """{media: {"copies": fractions, "distinct": nearest fractions, "identical": count}}."""
    rows = pq.read_table(os.path.join(run, "pool"), columns=["id", "media_type", "media"])
    truth = {t["id"]: t for t in pq.read_table(os.path.join(pool, "ground_truth.parquet")).to_pylist()}
    hashes = _hashes(rows.to_pylist(), config)
    frames = min(config.frames, 4)
    out = {}
    for kind, name in ((KIND_IMAGE, "image"), (2, "video")):
        bits = 64 if kind == KIND_IMAGE else 64 * frames
        ids = [i for i, (k, _) in hashes.items() if k == kind]
        words = {i: hashes[i][1] for i in ids}
        copies = [
            hamming(words[i], words[truth[i]["dup_of"]]) / bits
            for i in ids
            if truth[i]["dup_kind"] == "media_copy" and truth[i]["dup_of"] in words
        ]
        originals = [i for i in ids if not truth[i]["dup_of"] and truth[i]["defect"] == "none"]
        matrix = np.stack([words[i] for i in originals])
        dist = hamming(matrix[:, None, :], matrix[None, :, :]) / bits
        np.fill_diagonal(dist, np.inf)
        nearest = dist.argmin(axis=1)
        renders = [_render_key(i) for i in originals]
        identical = np.array([renders[k] == renders[j] for k, j in enumerate(nearest)])
        out[name] = {
            "copies": np.array(copies),
            "distinct": dist.min(axis=1)[~identical],
            "identical": int(identical.sum()),
        }
    return out


def _render_key(row_id: str) -> str:
    return hashlib.sha1(sp.render(sp._spec(0, int(row_id[4:]))).tobytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--out", default="/tmp/mmcurate_bench_dedup_pool")
    args = parser.parse_args(argv)
    pool, run = os.path.join(args.out, "pool"), os.path.join(args.out, "run")
    if not os.path.exists(os.path.join(pool, "ground_truth.parquet")):
        synthesize(args.lines, pool, seed=0, parallel=False)
    if not os.path.exists(os.path.join(run, "pool", "_SUCCESS")):
        ingest(IngestConfig(os.path.join(pool, "pool.jsonl"), run))
    started = time.time()
    config = MediaHashConfig()
    result = distances(pool, run, config)
    print(f"hashed in {time.time() - started:.1f}s with {config}")
    for name, parts in result.items():
        print(f"{name} copies (distance to original, fraction of bits): {_summary(parts['copies'])}")
        print(f"{name} distinct originals (nearest other original): {_summary(parts['distinct'])}")
        print(f"{name} originals whose nearest original is the identical render: {parts['identical']}")
        gap = parts["distinct"].min() - parts["copies"].max()
        print(f"{name} margin (nearest distinct min - copies max): {gap:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

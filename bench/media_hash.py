"""Media fingerprints on the synthetic pool: distances of true copies vs distinct pictures.

For every media_copy row of the ground truth: the pHash Hamming distance (fraction of the
bits) and the colour-thumbnail mean absolute difference (grey levels) to its original. For
every original (not a duplicate), its nearest other original of the same media type under
each distance, and under the copy rule (both distances within the limits), split by whether
the two renders are pixel-identical (identical pictures of distinct samples are copies as far
as media go). A limit separates copies from distinct pictures when it is above the copies'
maximum and below the distinct pairs' minimum.

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


def _fingerprints(rows: list[dict], config: MediaHashConfig) -> dict[str, tuple]:
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
    q = np.percentile(values, [0, 1, 5, 50, 95, 100])
    names = ("min", "p1", "p5", "median", "p95", "max")
    return f"n={len(values)} " + " ".join(f"{n} {v:.3f}" for n, v in zip(names, q, strict=True))


def _pairwise(fps: list[tuple], bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(pHash fraction, thumbnail mean |diff|) matrices over fingerprints."""
    words = np.stack([f[1] for f in fps])
    thumbs = np.stack([f[2] for f in fps]).astype(np.int16)
    phash = hamming(words[:, None, :], words[None, :, :]) / bits
    thumb = np.empty(phash.shape, np.float32)
    for start in range(0, len(fps), 128):
        thumb[start : start + 128] = np.abs(thumbs[start : start + 128, None] - thumbs).mean(-1)
    return phash, thumb


def distances(pool: str, run: str, config: MediaHashConfig) -> dict:
    """Per media type: copies' distances, originals' nearest distinct distances, merges."""
    rows = pq.read_table(os.path.join(run, "pool"), columns=["id", "media_type", "media"])
    truth = pq.read_table(os.path.join(pool, "ground_truth.parquet")).to_pylist()
    truth = {t["id"]: t for t in truth}
    fps = _fingerprints(rows.to_pylist(), config)
    out = {}
    for kind, name in ((KIND_IMAGE, "image"), (2, "video")):
        bits = 64 if kind == KIND_IMAGE else 64 * min(config.frames, 4)
        limit = config.max_thumb_image if kind == KIND_IMAGE else config.max_thumb_video
        ids = [i for i, f in fps.items() if f[0] == kind]
        copies = [
            i for i in ids if truth[i]["dup_kind"] == "media_copy" and truth[i]["dup_of"] in fps
        ]
        pairs = [(fps[i], fps[truth[i]["dup_of"]]) for i in copies]
        copy_phash = np.array([hamming(a[1], b[1]) / bits for a, b in pairs])
        copy_thumb = np.array([np.abs(a[2].astype(int) - b[2]).mean() for a, b in pairs])
        originals = [i for i in ids if not truth[i]["dup_of"] and truth[i]["defect"] == "none"]
        renders = np.array([_render_key(i) for i in originals])
        phash, thumb = _pairwise([fps[i] for i in originals], bits)
        distinct = renders[:, None] != renders[None, :]
        inf = np.float32(np.inf)
        merged = (phash <= config.max_phash) & (thumb <= limit) & distinct
        out[name] = {
            "copy_phash": copy_phash,
            "copy_thumb": copy_thumb,
            "copy_recall": float(np.mean((copy_phash <= config.max_phash) & (copy_thumb <= limit))),
            "distinct_phash": np.where(distinct, phash, inf).min(axis=1),
            "distinct_thumb": np.where(distinct, thumb, inf).min(axis=1),
            "originals": len(originals),
            "falsely_merged": int(merged.any(axis=1).sum()),
            "identical_renders": int(((~distinct).sum(axis=1) > 1).sum()),  # self included
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
    print(f"fingerprints and distances in {time.time() - started:.1f}s; {config}")
    for name, r in result.items():
        print(f"{name} copies, pHash distance / bits:        {_summary(r['copy_phash'])}")
        print(f"{name} copies, thumbnail mean |diff|:        {_summary(r['copy_thumb'])}")
        print(f"{name} distinct, nearest pHash distance:      {_summary(r['distinct_phash'])}")
        print(f"{name} distinct, nearest thumbnail |diff|:    {_summary(r['distinct_thumb'])}")
        print(
            f"{name}: copies within both limits {r['copy_recall']:.3f}; originals with a "
            f"distinct original within both limits {r['falsely_merged']} of {r['originals']}; "
            f"originals sharing the exact render with another {r['identical_renders']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

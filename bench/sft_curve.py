"""The SFT learning curve on the synthetic pool, beside two chance references.

Prints, from a finished `mmcurate train` run, held-out accuracy per category against samples
seen (metrics.jsonl), and for the same held-out rows: uniform guessing over each question's
answer set (yes/no 1/2, multiple choice 1/4, else 1/|answers of its type|), and the majority
answer of the training rows per (question type, style). Both need the pools' ground truth.

    python bench/sft_curve.py --run RUN --subset all --pool POOL --heldout HELDOUT_POOL
(the run is made by: mmcurate train --run RUN --subset all --heldout HELDOUT_POOL ...)
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter, defaultdict

import numpy as np
import pyarrow.parquet as pq

from ray_jobs.synthetic_pool import ANSWER_SETS


def _truth(pool: str) -> dict:
    table = pq.read_table(os.path.join(pool, "ground_truth.parquet")).to_pylist()
    return {r["id"]: r for r in table}


def chance(run: str, subset: str, pool: str, heldout_pool: str) -> dict:
    """Per category: uniform-guess and majority-answer accuracy on the held-out rows."""
    out = os.path.join(run, "train", subset)
    heldout = pq.read_table(os.path.join(out, "heldout.parquet")).to_pylist()
    train = pq.read_table(os.path.join(out, "rows.parquet"), columns=["id", "answer"]).to_pylist()
    train_truth, held_truth = _truth(pool), _truth(heldout_pool)
    majority = defaultdict(Counter)
    for row in train:
        t = train_truth[row["id"]]
        majority[(t["qtype"], t["style"])][row["answer"]] += 1
    uniform, major = defaultdict(list), defaultdict(list)
    for row in heldout:
        t = held_truth[row["id"]]
        size = {"yes/no": 2, "multi-choice": 4}.get(t["style"], len(ANSWER_SETS[t["qtype"]]))
        uniform[t["category"]].append(1 / size)
        guess = majority[(t["qtype"], t["style"])].most_common(1)
        major[t["category"]].append(float(bool(guess) and guess[0][0] == row["answer"]))
    return {
        c: {"uniform": float(np.mean(uniform[c])), "majority": float(np.mean(major[c]))}
        for c in sorted(uniform)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--run", "--subset", "--pool", "--heldout"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    refs = chance(args.run, args.subset, args.pool, args.heldout)
    metrics = os.path.join(args.run, "train", args.subset, "metrics.jsonl")
    records = [json.loads(x) for x in open(metrics)]
    cats = sorted(refs)
    print("samples  wall_s  train_loss  heldout_loss  " + "  ".join(f"{c:>12s}" for c in cats))
    for r in (r for r in records if r.get("event") == "eval"):
        loss = "" if r.get("loss") is None else f"{r['loss']:.3f}"
        accs = "  ".join(f"{r['accuracy'].get(c, float('nan')):12.2f}" for c in cats)
        print(
            f"{r['samples_seen']:7d}  {r['wall_s']:6.0f}  {loss:>10s}  "
            f"{r['heldout_loss']:12.3f}  {accs}"
        )
    for kind in ("uniform", "majority"):
        accs = "  ".join(f"{refs[c][kind]:12.2f}" for c in cats)
        print(f"{kind + ' guess':>43s}  {accs}")


if __name__ == "__main__":
    main()

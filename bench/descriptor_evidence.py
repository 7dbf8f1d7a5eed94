"""Evidence: do the model descriptors find what the synthetic pool's ground truth says?

Runs the model-descriptor stage (Ray Data actor pool, the warmed proxy in RUN/proxy) over
RUN/pool, joins the ground truth by id, and prints

- AUROC of `vds` for vision-needing rows vs text-answerable ones (aim >= 0.8);
- AUROC of `temporal_loss_gap` for direction videos vs static videos (aim >= 0.8);
- AUROC of `loss` for wrong-answer rows vs the rest;
- the PISM and CMAB label distributions (and stability), on a subset (`--label-rows`),
  since PISM's K masks per ratio make it the costly pass.

Each AUROC is printed over all rows and over the rows the proxy did not train on.

    python bench/descriptor_evidence.py --run RUN --truth POOL/ground_truth.parquet
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from operators.model_descriptors import DescriptorConfig, apply_model_descriptors
from operators.pism import PismConfig
from operators.vlm_runtime import RuntimeConfig


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties counting 1/2 (Mann-Whitney).

    >>> auroc(np.array([3.0, 4.0]), np.array([1.0, 3.0]))
    0.875
    """
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _score(run: str, groups: tuple[str, ...], limit: int | None, args) -> dict:
    import ray

    ds = ray.data.read_parquet(os.path.join(run, "pool"), file_extensions=["parquet"])
    if limit:
        ds = ds.random_sample(min(1.0, 1.2 * limit / ds.count()), seed=7).limit(limit)
    config = DescriptorConfig(
        RuntimeConfig(args.proxy or os.path.join(run, "proxy")),
        descriptors=groups,
        pism=PismConfig(masks_per_ratio=args.masks),
    )
    scored = apply_model_descriptors(ds, config, 1, args.actors, batch_size=args.batch_size)
    table = pa.concat_tables(ray.get(scored.to_arrow_refs()))
    keep = ["id", "model_error", "loss", "loss_blind", "vds", "temporal_loss_gap", "stability"]
    keep += ["pism_lambda", "pism_label", "cmab_ratio", "cmab_label"]
    return {name: np.array(table.column(name).to_pylist(), dtype=object) for name in keep}


def _report_aurocs(cols: dict, truth: dict, trained: set[str]) -> None:
    ids = cols["id"]
    defect = np.array([truth[i]["defect"] for i in ids])
    category = np.array([truth[i]["category"] for i in ids])
    held = np.array([i not in trained for i in ids])
    ok = np.array([e is None for e in cols["model_error"]])
    clean = ok & ~np.isin(defect, ["wrong_answer", "text_answerable"])
    tests = {
        "vds: vision-needing > text-answerable": ("vds", clean, ok & (defect == "text_answerable")),
        "temporal_loss_gap: direction video > static video": (
            "temporal_loss_gap",
            clean & (category == "temporal"),
            clean & (category == "static_video"),
        ),
        "loss: wrong answer > correct": (
            "loss",
            ok & (defect == "wrong_answer"),
            ok & (defect != "wrong_answer"),
        ),
    }
    for name, (column, pos, neg) in tests.items():
        values = cols[column].astype(float)
        for scope, mask in (("all", ok), ("held-out", held)):
            p, n = values[pos & mask], values[neg & mask]
            print(f"  {name:45s} {scope:9s} AUROC {auroc(p, n):.3f}  (n+ {len(p)}, n- {len(n)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True)
    parser.add_argument("--truth", required=True, help="ground_truth.parquet of the pool")
    parser.add_argument("--proxy", default=None, help="default: RUN/proxy")
    parser.add_argument("--label-rows", type=int, default=400)
    parser.add_argument("--masks", type=int, default=10, help="PISM masks per ratio")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    from ray_jobs.rundir import ensure_ray

    ensure_ray()
    truth = {r["id"]: r for r in pq.read_table(args.truth).to_pylist() if r["id"]}
    ids_file = os.path.join(args.proxy or os.path.join(args.run, "proxy"), "train_ids.txt")
    trained = set(open(ids_file).read().split()) if os.path.exists(ids_file) else set()
    print(f"proxy trained on {len(trained)} rows")
    cols = _score(args.run, ("loss", "temporal"), None, args)
    print(f"loss / vds / temporal over {len(cols['id'])} rows:")
    _report_aurocs(cols, truth, trained)
    cols = _score(args.run, ("stability", "pism", "cmab"), args.label_rows, args)
    ok = np.array([e is None for e in cols["model_error"]])
    print(f"labels over {len(cols['id'])} rows (PISM K={args.masks}), errors {int((~ok).sum())}:")
    print(f"  pism_label {dict(Counter(cols['pism_label'][ok].tolist()))}")
    print(f"  cmab_label {dict(Counter(cols['cmab_label'][ok].tolist()))}")
    ratio = cols["cmab_ratio"][ok].astype(float)
    print(
        f"  cmab_ratio median {np.median(ratio):.3f}  p10 {np.quantile(ratio, 0.1):.3f}  "
        f"p90 {np.quantile(ratio, 0.9):.3f}"
    )
    print(f"  stability mean {cols['stability'][ok].astype(float).mean():.3f}")


if __name__ == "__main__":
    main()

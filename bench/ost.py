"""OST one-step utility on a warmed-up proxy: agreement of the forms, toxic-row recall, rows/s.

Needs a run directory with `pool/` and a warmed `proxy/` (`mmcurate synth`, `mmcurate
ingest`, `mmcurate proxy warmup`) and the synthetic pool's `ground_truth.parquet`. Scores the
same rows with the exact form, the first-order form without projection and with the
projection, in-process on one actor's worth of work, and prints:

- Spearman of each first-order variant against the exact Δ;
- precision of the lowest-k rows by utility for k = the number of wrong-answer rows among
  them (all scored rows, and rows held out of the warm-up slice);
- rows/s of each form, with the proxy's plain NLL forward (`VLMRuntime.nll`) on the same rows
  as the reference in the same run.

    python -m bench.ost --run /tmp/ost/run --truth /tmp/ost/pool/ground_truth.parquet
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from operators.ost import OneStepUtility, OstConfig
from operators.vlm_runtime import RuntimeConfig


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = [np.argsort(np.argsort(x)).astype(float) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def lowest_k_precision(utility: np.ndarray, toxic: np.ndarray) -> tuple[float, int]:
    k = int(toxic.sum())
    lowest = np.argsort(utility)[:k]
    return (float(toxic[lowest].mean()) if k else float("nan")), k


def _timed(op: OneStepUtility, table: pa.Table, batch: int) -> tuple[np.ndarray, float]:
    started, values = time.perf_counter(), []
    for start in range(0, table.num_rows, batch):
        out = op(table.slice(start, batch))
        values.append(np.array(out.column("ost_utility").to_pylist(), dtype=float))
    return np.concatenate(values), table.num_rows / (time.perf_counter() - started)


def _reference(op: OneStepUtility, table: pa.Table, batch: int):
    """rows/s of decode + encode + plain NLL forward on the same rows, and per row the
    proxy's answer NLL and teacher-forced correctness (NaN / False where not encoded)."""
    nll, correct = np.full(table.num_rows, np.nan), np.zeros(table.num_rows, dtype=bool)
    started = time.perf_counter()
    for start in range(0, table.num_rows, batch):
        encodings, _ = op._encode(table.slice(start, batch).to_pylist())
        ok = [start + k for k, e in enumerate(encodings) if e is not None]
        nll[ok], correct[ok] = op.runtime.nll([e for e in encodings if e is not None])
    return table.num_rows / (time.perf_counter() - started), nll, correct


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True)
    parser.add_argument("--truth", required=True)
    parser.add_argument("--rows", type=int, default=0, help="score the first N rows (0: all)")
    parser.add_argument("--eta", type=float, default=1e-3)
    parser.add_argument("--target-size", type=int, default=64)
    parser.add_argument("--projection-dim", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target-ids", default=None, help="file of target ids (default: sample)")
    parser.add_argument("--params", default="lm_head", help="comma-separated name prefixes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pool = os.path.join(args.run, "pool")
    table = pds.dataset(pool, format="parquet").to_table()
    table = table.slice(0, args.rows) if args.rows else table
    base = OstConfig(
        RuntimeConfig(os.path.join(args.run, "proxy"), max_rows=args.batch),
        pool,
        eta=args.eta,
        target_size=args.target_size,
        target_ids=args.target_ids,
        params=tuple(args.params.split(",")),
        exclude_ids=os.path.join(args.run, "proxy", "train_ids.txt"),
    )
    variants = {
        "exact": {"form": "exact"},
        "first_order": {"projection_dim": 0},
        f"first_order_proj{args.projection_dim}": {"projection_dim": args.projection_dim},
    }
    results, rates, reference = {}, {}, None
    for name, changes in variants.items():
        op = OneStepUtility(OstConfig(**{**base.__dict__, **changes}))
        if reference is None:
            reference, nll, correct = _reference(op, table, args.batch)
        results[name], rates[name] = _timed(op, table, args.batch)
        print(f"{name}: {rates[name]:.1f} rows/s ({rates[name] / reference:.2f}x NLL forward)")
    truth = pq.read_table(args.truth, columns=["id", "defect"]).to_pylist()
    defect = {str(r["id"]): r["defect"] for r in truth}
    ids = [str(i) for i in table.column("id").to_pylist()]
    toxic = np.array([defect.get(i) == "wrong_answer" for i in ids])
    with open(os.path.join(args.run, "proxy", "train_ids.txt")) as handle:
        trained = {line.strip() for line in handle}
    held_out = np.array([i not in trained for i in ids])
    ok = np.isfinite(results["exact"])
    report = {
        "rows": int(ok.sum()),
        "toxic": int(toxic[ok].sum()),
        "eta": args.eta,
        "target_rows": len(op.target),
        "reference_nll_rows_per_s": round(reference, 2),
        "rows_per_s": {k: round(v, 2) for k, v in rates.items()},
        # can the proxy tell a wrong answer at all? (teacher-forced, on the row's own answer)
        "proxy_correct_clean": round(float(correct[ok & ~toxic].mean()), 3),
        "proxy_nll_clean": round(float(np.nanmean(nll[ok & ~toxic])), 3),
        "proxy_nll_wrong_answer": round(float(np.nanmean(nll[ok & toxic])), 3),
    }
    for name, values in results.items():
        if name != "exact":
            report[f"spearman_{name}_vs_exact"] = round(
                spearman(values[ok], results["exact"][ok]), 4
            )
        for scope, mask in (("all", ok), ("held_out", ok & held_out)):
            precision, k = lowest_k_precision(values[mask], toxic[mask])
            report[f"toxic_precision_{name}_{scope}"] = {"precision": round(precision, 3), "k": k}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

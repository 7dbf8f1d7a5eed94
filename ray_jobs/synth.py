"""`mmcurate synth`: write the synthetic pool (LLaVA JSONL + media) and its ground truth.

Small pools are generated in-process; large ones in parallel Ray tasks over index ranges.
The output is the same either way: every line is a pure function of (seed, line).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import pyarrow as pa

from operators.formats.writers import write_parquet_atomic
from ray_jobs.synthetic_pool import DEFECT_RATES, generate_line
from training.base_corpus import FIRST_LINE

__all__ = ["main", "synthesize"]

PARALLEL_ABOVE = 4000
TRUTH_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("id", pa.string()),
        ("category", pa.string()),
        ("defect", pa.string()),
        ("dup_of", pa.string()),
        ("dup_kind", pa.string()),
        ("true_answer", pa.string()),
        ("qtype", pa.string()),
        ("style", pa.string()),
    ]
)


def _generate_range(seed: int, start: int, end: int, root: str, rates: dict):
    lines, truths = [], []
    for i in range(start, end):
        line, truth = generate_line(seed, i, root, rates)
        lines.append(line)
        truths.append(truth)
    return lines, truths


def synthesize(
    n: int, out: str, seed: int = 0, rates: dict | None = None, parallel: bool | None = None
) -> dict:
    """Write `out/pool.jsonl`, `out/media/`, `out/ground_truth.parquet`; return counts.

    Pools hold lines 0 .. n-1 < FIRST_LINE: the lines from FIRST_LINE on are the base model's
    caption corpus (training/base_corpus.py), so no pool, whatever its seed, shares one."""
    if n > FIRST_LINE:
        raise ValueError(f"a pool holds at most {FIRST_LINE} lines (the base corpus's are above)")
    rates = dict(DEFECT_RATES if rates is None else rates)
    os.makedirs(os.path.join(out, "media"), exist_ok=True)
    parallel = n > PARALLEL_ABOVE if parallel is None else parallel
    block = 1000
    ranges = [(s, min(s + block, n)) for s in range(0, n, block)]
    if parallel:
        import ray

        from ray_jobs.rundir import ensure_ray

        ensure_ray()
        task = ray.remote(_generate_range)
        parts = ray.get([task.remote(seed, s, e, out, rates) for s, e in ranges])
    else:
        parts = [_generate_range(seed, s, e, out, rates) for s, e in ranges]
    tmp = os.path.join(out, "pool.jsonl.tmp")
    with open(tmp, "w") as handle:
        for lines, _ in parts:
            handle.writelines(line + "\n" for line in lines)
    os.replace(tmp, os.path.join(out, "pool.jsonl"))
    truth = pa.Table.from_pylist([t for _, ts in parts for t in ts], schema=TRUTH_SCHEMA)
    write_parquet_atomic(truth, os.path.join(out, "ground_truth.parquet"))
    defects = truth.column("defect").value_counts().to_pylist()
    counts = {"lines": n, "defects": {d["values"]: d["counts"] for d in defects}}
    with open(os.path.join(out, "synth.json"), "w") as handle:
        json.dump({"seed": seed, "rates": rates, **counts}, handle, indent=2)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate synth", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="number of pool lines")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.time()
    counts = synthesize(args.n, args.out, args.seed)
    print(
        f"[mmcurate] synth: {counts['lines']} lines in {args.out} "
        f"({time.time() - started:.1f}s); defects: {counts['defects']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

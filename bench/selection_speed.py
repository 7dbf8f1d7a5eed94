"""Benchmark every selection method on N synthetic descriptor rows (default 10M, no media).

Each method runs in its own process on a memory-mapped Arrow IPC copy of the pool, so the
peak RSS printed is that method's (pool columns it touched included). Beside each time is a
plain `numpy.argsort` of one float64 column of the same pool, timed in the same process: the
ratio says how many full-column sorts a method costs, which travels across machines better
than seconds. Wall and CPU seconds are both printed: on a shared, overloaded machine the
process CPU time (all threads) is the steadier figure. Targets (issue 6): <= 60 s and
<= 8 GB per method at 10M rows.

    python bench/selection_speed.py --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa

METHODS = ("gdo", "uniform", "mmssr", "ost", "pism", "random", "full", "per_category", "order")


def build(path: str, rows: int, seed: int) -> None:
    from selection.synthetic import descriptor_table

    started = time.time()
    table = descriptor_table(rows, seed=seed)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1 << 20)
    print(
        f"pool: {rows} rows, {table.nbytes / 2**30:.2f} GiB in memory, built in "
        f"{time.time() - started:.1f}s -> {path}",
        flush=True,
    )


def run_method(path: str, method: str, seed: int) -> dict:
    """In a child process: load the pool (memory-mapped), run one method, time it."""
    from ray_jobs.select import RUNNERS, SelectJobConfig, method_config
    from selection.baselines import random_select
    from selection.orderings import OrderConfig, apply_order

    table = pa.ipc.open_file(pa.memory_map(path)).read_all()
    column = table.column("loss").to_numpy()
    t, c = time.perf_counter(), time.process_time()
    np.argsort(column)
    ref, ref_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    if method == "order":  # a 30% random subset put in curriculum and balanced order
        sub = random_select(table, method_config(SelectJobConfig(run="", method="random")), seed)
        apply_order(table, sub, OrderConfig(order="curriculum"), seed)
        sub = apply_order(table, sub, OrderConfig(order="balanced"), seed)
    else:
        cfg = SelectJobConfig(run="", method=method)
        sub = RUNNERS[method](table, method_config(cfg), seed=seed)
    took, cpu = time.perf_counter() - t, time.process_time() - c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {
        "method": method,
        "seconds": took,
        "argsort_s": ref,
        "ratio": took / ref,
        "cpu_s": cpu,
        "argsort_cpu_s": ref_cpu,
        "cpu_ratio": cpu / max(ref_cpu, 1e-9),
        "peak_rss_gib": peak,
        "selected": int(len(sub.rows)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool-file", default=None, help="reuse / keep this Arrow IPC pool file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    path = a.pool_file or f"/tmp/mmcurate-bench-select-{a.rows}.arrow"
    if a.child:
        print(json.dumps(run_method(path, a.child, a.seed)))
        return 0
    if not os.path.exists(path):
        build(path, a.rows, a.seed)
    print(
        f"{'method':<14}{'wall s':>8}{'argsort':>9}{'ratio':>7}{'cpu s':>8}{'argsort':>9}"
        f"{'ratio':>7}{'peak GiB':>10}{'selected':>10}"
    )
    for method in a.methods.split(","):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--rows",
                str(a.rows),
                "--pool-file",
                path,
                "--seed",
                str(a.seed),
                "--child",
                method,
            ],
            capture_output=True,
            text=True,
            env=os.environ,
        )
        if out.returncode != 0:
            print(f"{method:<14} failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{method:<14}{r['seconds']:>8.1f}{r['argsort_s']:>9.2f}{r['ratio']:>7.1f}"
            f"{r['cpu_s']:>8.1f}{r['argsort_cpu_s']:>9.2f}{r['cpu_ratio']:>7.1f}"
            f"{r['peak_rss_gib']:>10.2f}{r['selected']:>10}",
            flush=True,
        )
    if not a.pool_file:
        os.remove(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: our Ray dedup vs a single-process datasketch MinHashLSH, on text pools with
known near-duplicate clusters (ray_jobs/synthetic_text.py).

For each size: generate the pool (not timed), run `ray_jobs.dedup` (wall time after Ray is up,
peak RSS of the driver and every Ray process it started, peak used memory of the machine),
then, in a fresh subprocess, the reference: one `MinHash` per row with the same shingles and
permutations, `MinHashLSH` with the same bands x rows, a query per row, a union-find over the
candidates (wall time, peak RSS). Both are scored against the ground truth: a removed row is
correct when its true cluster keeps another row (one survivor allowed per cluster).

    python bench/dedup.py --sizes 10000 100000
    python bench/dedup.py --sizes 1000000 --reference-max 100000
    python bench/dedup.py --generator templated --sizes 100000 --reference-max 0 --ngram 3
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import resource
import shutil
import sys
import threading
import time

import numpy as np
import psutil
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from operators.minhash import MinHashConfig, row_text, shingles  # noqa: E402
from operators.union_find import components_local  # noqa: E402
from ray_jobs.dedup import DedupConfig, dedup  # noqa: E402
from ray_jobs.synthetic_templated import generate_templated_rows  # noqa: E402
from ray_jobs.synthetic_text import generate_text_rows, write_text_pool  # noqa: E402

GENERATORS = {
    "random": generate_text_rows,
    "templated": generate_templated_rows,
    # shorter answers over a smaller vocabulary: distinct rows are mostly template
    "templated_short": functools.partial(generate_templated_rows, vocab=5000, body=(5, 40)),
}


class PeakMemory:
    """Samples the memory of this process + descendants and the machine's used memory.

    `tree` sums RSS, which counts the Ray object store's shared pages once per process that
    maps them; `tree_pss` sums PSS (shared pages split among their users), the footprint.
    `cpu_seconds` is the CPU time (user + system) the tree used while sampling: on a shared
    machine it says what the job costs when the wall time mostly says how busy the others were.
    """

    def __init__(self, interval: float = 0.2):
        self.interval, self.tree, self.tree_pss, self.machine = interval, 0, 0, 0
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._stop = threading.Event()

    @property
    def cpu_seconds(self) -> float:
        return sum(v - self._cpu_start.get(pid, 0.0) for pid, v in self._cpu_last.items())

    def _sample(self) -> None:
        me, first = psutil.Process(), True
        while not self._stop.is_set():
            rss = pss = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    info = proc.memory_full_info()
                    rss, pss = rss + info.rss, pss + info.pss
                    times = proc.cpu_times()
                    used = times.user + times.system
                    self._cpu_last[proc.pid] = used
                    if first:
                        self._cpu_start[proc.pid] = used
                except psutil.Error:
                    pass
            first = False
            self.tree, self.tree_pss = max(self.tree, rss), max(self.tree_pss, pss)
            self.machine = max(self.machine, psutil.virtual_memory().used)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def score(removed: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(precision, recall) of removed rows against true clusters, one survivor per cluster."""
    sizes = np.bincount(truth, minlength=len(truth))
    should = int((sizes[sizes > 1] - 1).sum())
    kept = ~removed
    kept_per_cluster = np.bincount(truth[kept], minlength=len(truth))
    # A removal is right when the row is in a true cluster of 2+ that still keeps a row.
    right = removed & (sizes[truth] > 1) & (kept_per_cluster[truth] > 0)
    precision = right.sum() / max(1, removed.sum())
    recall = min(right.sum(), should) / max(1, should)
    return float(precision), float(recall)


def _reference(pool_dir: str, config: MinHashConfig, queue) -> None:
    from datasketch import MinHash, MinHashLSH

    started = time.time()
    table = pq.read_table(pool_dir, columns=["messages", "answer"])
    texts = [
        " ".join(row_text(m, a))
        for m, a in zip(
            table.column("messages").to_pylist(), table.column("answer").to_pylist(), strict=True
        )
    ]
    lsh = MinHashLSH(num_perm=config.num_perm, params=config.band_rows())
    hashes = []
    for k, text in enumerate(texts):
        m = MinHash(num_perm=config.num_perm, seed=config.seed)
        m.update_batch(shingles(text, config.unit, config.ngram))
        lsh.insert(k, m, check_duplication=False)
        hashes.append(m)
    edges = [(k, j) for k, m in enumerate(hashes) for j in lsh.query(m) if j < k]
    nodes, roots = components_local(np.array(edges, dtype=np.int64).reshape(-1, 2))
    removed = np.zeros(len(texts), dtype=bool)
    removed[nodes[nodes != roots]] = True
    queue.put((time.time() - started, removed))


def run_reference(pool_dir: str, config: MinHashConfig) -> tuple[float, float, np.ndarray]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_reference, args=(pool_dir, config, queue))
    proc.start()
    seconds, removed = queue.get()
    proc.join()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # max over children
    return seconds, peak, removed


def run_ours(pool_dir: str, run: str, config: MinHashConfig, partitions: int):
    shutil.rmtree(run, ignore_errors=True)
    with PeakMemory() as memory:
        started = time.time()
        counts = dedup(
            DedupConfig(
                run=run, input=pool_dir, text=config, near_media=False, partitions=partitions
            )
        )
        seconds = time.time() - started
    out = pq.read_table(os.path.join(run, "dedup"), columns=["id", "dup_keep"])
    return seconds, memory, counts, ~out.column("dup_keep").to_numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--out", default="/tmp/mmcurate_bench_dedup")
    parser.add_argument("--reference-max", type=int, default=100_000, help="skip reference above")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--threshold", type=float, nargs="+", default=[MinHashConfig.threshold])
    parser.add_argument("--ngram", type=int, nargs="+", default=[MinHashConfig.ngram])
    parser.add_argument("--unit", choices=("word", "char"), default=MinHashConfig.unit)
    parser.add_argument(
        "--lsh-threshold",
        type=float,
        default=MinHashConfig.lsh_threshold,
        help="similarity the LSH bands are chosen for when verifying",
    )
    parser.add_argument(
        "--verify", choices=("on", "off", "both"), default="on", help="verify band candidates"
    )
    parser.add_argument(
        "--generator",
        choices=sorted(GENERATORS),
        default="random",
        help="random: Zipf words (ray_jobs/synthetic_text.py); templated(_short): shared "
        "instruction templates and answer phrases (ray_jobs/synthetic_templated.py)",
    )
    args = parser.parse_args(argv)
    import ray

    verify = {"on": [True], "off": [False], "both": [False, True]}[args.verify]
    configs = [
        MinHashConfig(
            threshold=t, lsh_threshold=args.lsh_threshold, ngram=g, unit=args.unit, verify=v
        )
        for g in args.ngram
        for t in args.threshold
        for v in verify
    ]
    started = time.time()
    ray.init(include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(f"ray up in {time.time() - started:.1f}s")
    for n in args.sizes:
        name = "text" if args.generator == "random" else args.generator
        pool = os.path.join(args.out, f"{name}{n}")
        if not os.path.exists(os.path.join(pool, "truth.parquet")):
            write_text_pool(n, pool, seed=n, generate=GENERATORS[args.generator])
        for config in configs:
            print(json.dumps(measure(n, pool, config, args)), flush=True)
    return 0


def measure(n: int, pool: str, config: MinHashConfig, args) -> dict:
    """One dedup run of `pool` with `config` (and the reference up to --reference-max)."""
    truth = pq.read_table(os.path.join(pool, "truth.parquet")).column("cluster").to_numpy()
    seconds, memory, counts, removed = run_ours(
        os.path.join(pool, "pool"), os.path.join(pool, "run"), config, args.partitions
    )
    p, r = score(removed, truth)
    with open(os.path.join(pool, "run", "dedup", "_seconds.json")) as handle:
        steps = json.load(handle)
    row = {
        "rows": n,
        "config": f"{config.unit} {config.ngram}-grams @ {config.threshold}"
        f" {config.band_rows()} verify={config.verify}",
        "ours_s": round(seconds, 1),
        "ours_peak_rss_gb": round(memory.tree / 2**30, 2),
        "ours_peak_pss_gb": round(memory.tree_pss / 2**30, 2),
        "ours_cpu_s": round(memory.cpu_seconds, 1),
        "machine_peak_used_gb": round(memory.machine / 2**30, 2),
        "removed": int(removed.sum()),
        "ours_precision": round(p, 4),
        "ours_recall": round(r, 4),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "steps_s": steps,
    }
    if n <= args.reference_max:
        ref_s, ref_peak, ref_removed = run_reference(os.path.join(pool, "pool"), config)
        rp, rr = score(ref_removed, truth)
        row.update(
            ref_s=round(ref_s, 1),
            ref_peak_rss_gb=round(ref_peak / 2**30, 2),
            ref_precision=round(rp, 4),
            ref_recall=round(rr, 4),
            speedup=round(ref_s / seconds, 2),
        )
    return row


if __name__ == "__main__":
    raise SystemExit(main())

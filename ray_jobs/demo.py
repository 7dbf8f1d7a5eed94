"""`mmcurate demo`: the embedded default, end to end on a laptop.

Generates the synthetic pool (and a clean held-out pool with another seed for evaluation),
writes a recipe for it, and runs every stage on local Ray: ingest, warm-up of a tiny
Qwen2-VL proxy built offline, the streaming score stage, dedup, style clusters, the subsets
(GDO Temp+, mmSSR 30%, OST top-30%, random 30%, full), SFT of the tiny model on each with the
same budget of samples seen, and `report.html`. A rerun resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import time

import yaml

__all__ = ["demo_recipe", "main"]


def demo_recipe(out: str, n: int, train_samples: int, seed: int = 0) -> dict:
    """The demo's recipe as a plain mapping (written to OUT/recipe.yaml)."""
    budget = 0.3
    subsets = [
        {"name": "gdo-temp+", "method": "gdo", "preset": "temp+", "budget": budget},
        {"name": "mmssr-30", "method": "mmssr", "budget": budget},
        {"name": "ost-30", "method": "ost", "budget": budget},
        {"name": "random-30", "method": "random", "budget": budget, "seed": seed},
        {"name": "full", "method": "full"},
    ]
    heldout = os.path.join(os.path.abspath(out), "heldout")
    return {
        "name": "demo",
        "input": "pool/pool.jsonl",
        "run": "run",
        "proxy": {"max_rows": min(600, n // 3), "epochs": 4, "seed": seed},
        "score": {"pism": {"masks_per_ratio": 2}, "model_batch_size": 16},
        "cluster": {"k": 16, "nredo": 1},
        "subsets": subsets,
        # every training run: the same budget of samples seen, the same held-out pool
        "train_defaults": {
            "algo": "sft",
            "heldout": heldout,
            "heldout_per_category": 60,
            "sft": {
                "epochs": 1000,  # cycle a small subset; max_steps sets the budget
                "max_steps": train_samples // 32,
                "eval_every": max(train_samples // 4, 32),
                "batch_size": 32,
            },
        },
        "train": [{"subset": s["name"]} for s in subsets],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate demo", description=__doc__)
    parser.add_argument("--n", type=int, default=1500, help="pool lines")
    parser.add_argument("--out", default="demo", help="output directory")
    parser.add_argument(
        "--train-samples",
        type=int,
        default=2400,
        help="samples seen by each SFT run (the same for every subset)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true", help="Ray's output on the console")
    args = parser.parse_args(argv)
    from ray_jobs.console import set_verbose

    set_verbose(args.verbose)
    from ray_jobs.recipe import load_recipe
    from ray_jobs.run import run_recipe
    from ray_jobs.synth import synthesize

    started = time.time()
    os.makedirs(args.out, exist_ok=True)
    for name, n, seed in (("pool", args.n, args.seed), ("heldout", 600, args.seed + 1000)):
        folder = os.path.join(args.out, name)
        if not os.path.exists(os.path.join(folder, "ground_truth.parquet")):
            counts = synthesize(n, folder, seed=seed)
            print(
                f"[mmcurate] synth {name}: {counts['lines']} lines ({time.time() - started:.1f}s)",
                flush=True,
            )
    path = os.path.join(args.out, "recipe.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(
            demo_recipe(args.out, args.n, args.train_samples, args.seed),
            handle,
            sort_keys=False,
            default_flow_style=None,  # leaf mappings on one line: short enough to read
        )
    run_recipe(load_recipe(path))
    report = os.path.join(args.out, "run", "report.html")
    print(f"[mmcurate] demo finished in {time.time() - started:.0f}s; report: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

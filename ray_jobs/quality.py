"""`mmcurate bench quality`: do the selected subsets beat random and match the full pool?

A controlled experiment on the synthetic pool, whose ground truth is known. The pool (the
synthetic generator's defect rates and category weights, stated in the output) goes through
the real pipeline once (ingest, proxy warm-up, score, dedup, style clusters); then every arm
selects its subset with `mmcurate select` and trains a fixed target model with one fixed recipe,
for several seeds:

- SFT arms: the tiny Qwen2-VL from random weights (one init per seed), the same optimizer,
  batch and number of optimizer steps for every arm (a small subset is cycled), held-out
  accuracy per category evaluated at fixed points of samples seen.
- Difficulty arms (PISM / CMAB medium + hard): GRPO and SFT on the same rows, both starting
  from the warmed-up proxy (GRPO needs a policy that already earns some reward).

Figures per arm (mean and std over seeds): final held-out accuracy per category and overall,
"% of full" (mmSSR: final mean accuracy / the full-pool arm's), samples needed to reach the
full-pool arm's peak accuracy (GDO's peak match) and the reduction factor (the full arm's
samples at its peak / the arm's), wall time of selection and of training. Each paper's claim
is then checked and the verdict printed, "not reproduced" included (ray_jobs/quality_results).

Training runs are plain processes of the product's SFT / GRPO loops (`training.sft`,
`training.grpo` called outside Ray Train), `parallel` at a time, each on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

__all__ = ["ARMS", "Arm", "QualityConfig", "main", "run_quality"]


@dataclass(frozen=True)
class Arm:
    """One arm: a `mmcurate select` spec and how it trains."""

    name: str
    select: dict  # SelectJobConfig fields (method, preset, budget, order, ...)
    algo: str = "sft"  # sft | grpo
    base: str = "init"  # init: the tiny model's random init (per seed) | proxy: warmed proxy
    subset: str = ""  # the subset it trains on when another arm's (default: its own)


def _gdo(preset: str, **extra) -> dict:
    return {"method": "gdo", "preset": preset, "budget": 0.3, **extra}


_MEDIUM_HARD = {"levels": ("medium", "hard")}
ARMS = (
    Arm("full", {"method": "full"}),
    Arm("random-10", {"method": "random", "budget": 0.1}),
    Arm("random-30", {"method": "random", "budget": 0.3}),
    Arm("gdo-minloss", _gdo("minloss")),
    Arm("gdo-diverse", _gdo("diverse")),
    Arm("gdo-temp", _gdo("temp")),
    Arm("gdo-temp+", _gdo("temp+")),
    Arm("mmssr-10", {"method": "mmssr", "budget": 0.1}),
    Arm("mmssr-30", {"method": "mmssr", "budget": 0.3}),
    Arm("ost-20", {"method": "ost", "budget": 0.2}),
    Arm("ost-50", {"method": "ost", "budget": 0.5}),
    Arm("pism-mh-sft", {"method": "pism", **_MEDIUM_HARD}, "sft", "proxy"),
    Arm("pism-mh-grpo", {}, "grpo", "proxy", subset="pism-mh-sft"),
    Arm("cmab-mh-sft", {"method": "cmab", **_MEDIUM_HARD}, "sft", "proxy"),
    Arm("cmab-mh-grpo", {}, "grpo", "proxy", subset="cmab-mh-sft"),
    Arm("gdo-temp+-curriculum", _gdo("temp+", order="curriculum", order_by="loss")),
    Arm("gdo-temp+-reverse", _gdo("temp+", order="reverse_curriculum", order_by="loss")),
    Arm("gdo-temp+-balanced", _gdo("temp+", order="balanced")),
)


@dataclass(frozen=True)
class QualityConfig:
    """The benchmark's settings: fixed before any result is looked at, recorded in the output."""

    out: str = "bench-quality"  # output folder: pool/, heldout/, run/, arms/, results
    lines: int = 1500  # pool lines (defects and category mix: ray_jobs.synthetic_pool)
    pool_seed: int = 0
    seeds: tuple[int, ...] = (0, 1)  # model init and random-subset seeds
    arms: tuple[str, ...] = ()  # names from ARMS; () = all of them
    steps: int = 200  # optimizer steps of every SFT arm (equal budget)
    batch_size: int = 16
    learning_rate: float = 1e-3  # peak of the SFT schedule
    lr_schedule: str = "cosine"  # SFT schedule after a linear warm-up (training.sft)
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    evaluations: int = 4  # evaluations per run after step 0, evenly spaced in samples seen
    heldout_per_category: int = 40
    grpo_steps: int = 24  # GRPO optimizer steps (2 prompts x 8 generations each)
    grpo_learning_rate: float = 1e-4  # a tenth of SFT's, as the RL stages of the papers
    proxy_rows: int = 500  # rows of the pool the proxy warms up on
    parallel: int = 2  # training processes at a time (one core each)
    readme: str = ""  # a Markdown file whose generated section gets the results table
    extra: dict = field(default_factory=dict)  # recipe overrides (score, proxy, ...)

    def chosen_arms(self) -> list[Arm]:
        names = self.arms or tuple(a.name for a in ARMS)
        unknown = sorted(set(names) - {a.name for a in ARMS})
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; choose from {[a.name for a in ARMS]}")
        chosen = [a for a in ARMS if a.name in names]
        needed = {a.subset for a in chosen if a.subset} - {a.name for a in chosen}
        return [a for a in ARMS if a.name in needed or a in chosen]  # in ARMS order


def pipeline_recipe(cfg: QualityConfig) -> dict:
    """The recipe of the shared stages (ingest .. cluster) on the bench pool."""
    out = os.path.abspath(cfg.out)
    recipe = {
        "name": "quality",
        "input": os.path.join(out, "pool", "pool.jsonl"),
        "run": os.path.join(out, "run"),
        "stages": ["ingest", "proxy", "score", "dedup", "cluster"],
        "proxy": {"base": "", "max_rows": cfg.proxy_rows, "epochs": 4, "seed": cfg.pool_seed},
        "score": {"pism": {"masks_per_ratio": 2}, "model_batch_size": 16},
        "cluster": {"k": 16, "nredo": 1},
    }
    for key, value in cfg.extra.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe


def prepare_pools(cfg: QualityConfig) -> dict:
    from ray_jobs.synth import synthesize

    counts = {}
    for name, lines, seed in (
        ("pool", cfg.lines, cfg.pool_seed),
        ("heldout", 600, cfg.pool_seed + 1000),
    ):
        folder = os.path.join(cfg.out, name)
        if not os.path.exists(os.path.join(folder, "ground_truth.parquet")):
            counts[name] = synthesize(lines, folder, seed=seed)
    return counts


def run_pipeline(cfg: QualityConfig) -> None:
    import yaml

    from ray_jobs.recipe import load_recipe
    from ray_jobs.run import run_recipe

    path = os.path.join(cfg.out, "recipe.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(pipeline_recipe(cfg), handle, sort_keys=False)
    run_recipe(load_recipe(path))


def select_arms(cfg: QualityConfig, arms: list[Arm]) -> dict:
    """Build every arm's subset for every seed; {(arm, seed): selection wall seconds}. The
    seconds are kept in OUT/selection_seconds.json, so a rerun that reuses a complete subset
    reports the time it took to build."""
    from ray_jobs.select import SelectJobConfig, run_select

    run = os.path.join(os.path.abspath(cfg.out), "run")
    path = os.path.join(cfg.out, "selection_seconds.json")
    stored = {}
    if os.path.exists(path):
        with open(path) as handle:
            stored = json.load(handle)
    for arm in arms:
        if arm.subset:
            continue
        for seed in cfg.seeds:
            name = f"{arm.name}-s{seed}"
            spec = {**arm.select, "seed": seed, "name": name}
            spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
            started = time.time()
            counts = run_select(SelectJobConfig(run=run, **spec))
            if not counts.get("skipped") or name not in stored:
                stored[name] = time.time() - started
    with open(path, "w") as handle:
        json.dump(stored, handle, indent=1)
    return {
        (arm.name, seed): stored[f"{arm.name}-s{seed}"]
        for arm in arms
        if not arm.subset
        for seed in cfg.seeds
    }


def _base_model(cfg: QualityConfig, arm: Arm, seed: int) -> str:
    from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

    out = os.path.abspath(cfg.out)
    if arm.base == "proxy":
        return os.path.join(out, "run", "proxy")
    path = os.path.join(out, "models", f"tiny-s{seed}")
    if not os.path.exists(os.path.join(path, "config.json")):
        build_tiny_qwen2_vl(path, TinyConfig(seed=seed))
    return path


def _job(cfg: QualityConfig, arm: Arm, seed: int, heldout: str) -> dict:
    """Everything one training process needs (plain data: it crosses a process boundary)."""
    from operators.formats.writers import write_parquet_atomic
    from training.data import ordered_rows

    out = os.path.join(os.path.abspath(cfg.out), "arms", arm.name, f"s{seed}")
    subset = f"{arm.subset or arm.name}-s{seed}"
    rows, counts = ordered_rows(os.path.join(os.path.abspath(cfg.out), "run"), subset)
    rows_path = os.path.join(out, "rows.parquet")
    write_parquet_atomic(rows, rows_path)
    common = {"model": _base_model(cfg, arm, seed), "rows": rows_path, "out": out}
    common["heldout"] = heldout
    if arm.algo == "grpo":
        loop = {
            **common,
            "max_steps": cfg.grpo_steps,
            "epochs": 1000.0,
            "learning_rate": cfg.grpo_learning_rate,
            "eval_every": max(2 * cfg.grpo_steps // cfg.evaluations, 2),
            "save_steps": cfg.grpo_steps,
            "seed": seed,
        }
    else:
        loop = {
            **common,
            "batch_size": cfg.batch_size,
            "learning_rate": cfg.learning_rate,
            "lr_schedule": cfg.lr_schedule,
            "warmup_ratio": cfg.warmup_ratio,
            "max_grad_norm": cfg.max_grad_norm,
            "epochs": 10_000,  # cycle a small subset; max_steps is the budget
            "max_steps": cfg.steps,
            "eval_every": max(cfg.steps * cfg.batch_size // cfg.evaluations, 1),
            "cache_encodings": True,
            "seed": seed,
        }
        if arm.base == "proxy":  # the same input form as its GRPO twin (frames as images)
            loop["video_as_frames"] = True
    return {
        "arm": arm.name,
        "seed": seed,
        "algo": arm.algo,
        "subset_arm": arm.subset or arm.name,
        "loop": loop,
        "rows": rows.num_rows,
        "counts": {k: v for k, v in counts.items() if k != "manifest"},
    }


def train_job(job: dict) -> dict:
    """One arm x seed in this process: the product's SFT or GRPO loop, then its wall time."""
    import torch

    torch.set_num_threads(1)
    started = time.time()
    if job["rows"] == 0:
        return {**job, "wall_s": 0.0, "skipped": "empty subset"}
    done = os.path.join(job["loop"]["out"], "done.json")
    if os.path.exists(done):
        with open(done) as handle:
            return json.load(handle)
    if job["algo"] == "grpo":
        from training.grpo import train_loop_per_worker
    else:
        from training.sft import train_loop_per_worker
    train_loop_per_worker(job["loop"])
    result = {**job, "wall_s": time.time() - started}
    with open(done, "w") as handle:
        json.dump(result, handle)
    return result


def train_arms(cfg: QualityConfig, arms: list[Arm]) -> list[dict]:
    from operators.formats.writers import write_parquet_atomic
    from training.data import heldout_rows

    heldout = os.path.join(os.path.abspath(cfg.out), "heldout.parquet")
    if not os.path.exists(heldout):
        table = heldout_rows(os.path.join(cfg.out, "heldout"), cfg.heldout_per_category)
        write_parquet_atomic(table, heldout)
    jobs = [_job(cfg, arm, seed, heldout) for arm in arms for seed in cfg.seeds]
    # Longest first, so the two cores finish together.
    jobs.sort(key=lambda j: (j["algo"] != "grpo", -j["rows"]))
    context = get_context("spawn")
    with ProcessPoolExecutor(cfg.parallel, mp_context=context, max_tasks_per_child=1) as pool:
        results = []
        for result in pool.map(train_job, jobs):
            print(
                f"[mmcurate] bench quality: {result['arm']} seed {result['seed']} trained "
                f"({result['rows']} rows, {result['wall_s']:.0f}s)",
                flush=True,
            )
            results.append(result)
    order = [a.name for a in arms]
    return sorted(results, key=lambda r: (order.index(r["arm"]), r["seed"]))


def record_wall_time(out: str, pipeline_s: float, total_s: float) -> dict:
    """Append this invocation's wall time to OUT/wall.json (a rerun reuses earlier work, so
    the results' cost is the sum over invocations); returns {"invocations": [...]}."""
    path = os.path.join(out, "wall.json")
    runs = []
    if os.path.exists(path):
        with open(path) as handle:
            runs = json.load(handle)["invocations"]
    runs.append({"pipeline": round(pipeline_s, 1), "total": round(total_s, 1)})
    with open(path, "w") as handle:
        json.dump({"invocations": runs}, handle)
    return {"invocations": runs}


def run_quality(cfg: QualityConfig) -> dict:
    """Run the whole benchmark; returns the results (also OUT/results.json)."""
    from ray_jobs.quality_results import summarize_results, write_outputs

    started = time.time()
    arms = cfg.chosen_arms()
    os.makedirs(cfg.out, exist_ok=True)
    prepare_pools(cfg)
    t0 = time.time()
    run_pipeline(cfg)
    pipeline_s = time.time() - t0
    selection_s = select_arms(cfg, arms)
    runs = train_arms(cfg, arms)
    results = summarize_results(cfg, runs, selection_s)
    results["wall_s"] = record_wall_time(cfg.out, pipeline_s, time.time() - started)
    results["settings"] = json.loads(json.dumps(dataclasses.asdict(cfg), default=list))
    write_outputs(cfg, results)
    return results


def parse(argv: list[str] | None) -> QualityConfig:
    defaults = QualityConfig()
    p = argparse.ArgumentParser(
        prog="mmcurate bench quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=defaults.out, help="output folder")
    p.add_argument("--lines", type=int, default=defaults.lines, help="pool lines")
    p.add_argument("--seeds", type=int, default=len(defaults.seeds), help="number of seeds")
    p.add_argument("--arms", default="", help="comma list of arms (default: all)")
    p.add_argument("--steps", type=int, default=defaults.steps, help="SFT steps per arm")
    p.add_argument("--grpo-steps", type=int, default=defaults.grpo_steps)
    p.add_argument("--evaluations", type=int, default=defaults.evaluations)
    p.add_argument("--heldout-per-category", type=int, default=defaults.heldout_per_category)
    p.add_argument("--proxy-rows", type=int, default=defaults.proxy_rows)
    p.add_argument("--parallel", type=int, default=defaults.parallel)
    p.add_argument("--readme", default="", help="Markdown file to write the results table into")
    a = p.parse_args(argv)
    return QualityConfig(
        out=a.out,
        lines=a.lines,
        seeds=tuple(range(a.seeds)),
        arms=tuple(s for s in a.arms.split(",") if s),
        steps=a.steps,
        grpo_steps=a.grpo_steps,
        evaluations=a.evaluations,
        heldout_per_category=a.heldout_per_category,
        proxy_rows=a.proxy_rows,
        parallel=a.parallel,
        readme=a.readme,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    results = run_quality(cfg)
    print(results["table"])
    print("\n".join(results["verdicts"]))
    took = results["wall_s"]["invocations"][-1]["total"]
    print(f"[mmcurate] bench quality: {took:.0f}s; {cfg.out}/results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

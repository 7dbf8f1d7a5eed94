"""`mmcurate select`: build one subset of a run and write it with its manifest.

Reads RUN/scored/ (pool rows + descriptors), joins RUN/dedup/ (id, dup_cluster, dup_keep,
dup_reason) and RUN/clusters/ (id, cluster, cluster_dist, cluster_size) when they exist, sorts
by id (so shard layout never changes a result), runs one method of `selection/`, orders the
subset, and writes RUN/subsets/NAME/subset.parquet (id, position, stage) plus manifest.json
(method, preset, config, budget, seed, pool fingerprint, counts, what each constraint did).
Selection is columnar NumPy on one node (10M rows fit), so this job needs no Ray. The same
inputs, config and seed give byte-identical outputs.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators import storage
from operators.formats.writers import write_parquet_atomic
from ray_jobs.rundir import is_complete, mark_complete, read_counts, stage_line
from selection.baselines import (
    DifficultyConfig,
    OSTConfig,
    SimpleConfig,
    difficulty_select,
    full_select,
    ost_select,
    per_category_select,
    random_select,
)
from selection.common import Subset, composition, pool_fingerprint
from selection.gdo import PRESETS, GDOConfig, UniformConfig, gdo_select, uniform_select
from selection.gdo_score import GDOScoreConfig
from selection.mmssr import MMSSRConfig, mmssr_select
from selection.orderings import ORDERS, OrderConfig, apply_order

__all__ = ["METHODS", "SelectJobConfig", "main", "run_select"]

METHODS = ("gdo", "uniform", "mmssr", "ost", "pism", "cmab", "random", "full", "per_category")
JOINS = {
    "dedup": ("dup_cluster", "dup_keep", "dup_reason"),
    "clusters": ("cluster", "cluster_dist", "cluster_size"),
}
# Columns any method reads; everything else in scored/ (media paths, extra JSON) stays on disk.
READ = {
    "id",
    "source",
    "media_type",
    "video_id",
    "messages",
    "category",
    "answer",
    "motion",
    "frame_div",
    "num_frames",
    "duration",
    "loss",
    "loss_blind",
    "vds",
    "ppl",
    "temporal_loss_gap",
    "temporal_prompted",
    "stability",
    "cluster",
    "cluster_dist",
    "cluster_size",
    "pism_label",
    "cmab_label",
    "pism_lambda",
    "cmab_ratio",
    "styles",
    "ost_utility",
    "dup_cluster",
    "dup_keep",
    "model_error",
}
COUNT_COLUMNS = ["media_type", "category", "source"]


@dataclass(frozen=True)
class SelectJobConfig:
    """One `mmcurate select` run."""

    run: str  # the run directory
    method: str = "gdo"  # one of METHODS
    preset: str = "temp+"  # GDO preset (gdo, uniform): minloss, diverse, temp, temp+
    budget: int | float | None = None  # int >= 1: rows; float in (0, 1]: share of eligible rows
    order: str = "mixing"  # one of ORDERS
    stages: tuple[str, ...] = ("general", "chart", "ocr")  # curriculum category stages
    order_by: str | None = None  # curriculum by this column ascending ("-col": descending)
    with_replacement: bool = False  # balanced sampling may repeat rows of small categories
    name: str | None = None  # subset name; default METHOD or METHOD-PRESET
    seed: int = 0
    multiplier: float = 1.0  # uniform: 10 is Uni-10x
    ablation: tuple[str, ...] = ()  # gdo: any of no-vds, no-sc, no-ppl
    threshold: float = 0.0  # mmssr score threshold
    harmful: float = 0.05  # ost: fraction / count flagged harmful
    levels: tuple[str, ...] = ()  # pism / cmab: these levels instead of the SFT->GRPO plan
    keep_duplicates: bool = False  # do not drop dup_keep == false rows
    allow_missing_descriptors: bool = False  # gdo: missing descriptors count as neutral
    force: bool = False  # rebuild even if the subset is complete

    @property
    def subset_name(self) -> str:
        if self.name:
            return self.name
        return f"{self.method}-{self.preset}" if self.method in ("gdo", "uniform") else self.method


def _read_dir(path: str, columns: set[str] | None) -> pa.Table | None:
    files = [storage.join(path, n) for n in storage.listdir(path) if n.endswith(".parquet")]
    if not files:
        return None
    tables = []
    for f in files:
        names = storage.read_schema(f).names
        keep = [c for c in names if columns is None or c in columns or c.startswith("cap_")]
        tables.append(storage.read_parquet(f, columns=keep))
    return pa.concat_tables(tables, promote_options="default")


def load_pool(run: str) -> tuple[pa.Table, dict]:
    """scored/ joined with dedup/ and clusters/ when present, sorted by id."""
    pool = _read_dir(storage.join(run, "scored"), READ)
    if pool is None:
        raise FileNotFoundError(f"no Parquet shards under {run}/scored")
    joined = {}
    for name, cols in JOINS.items():
        side = _read_dir(storage.join(run, name), {"id", *cols})
        joined[name] = side is not None
        if side is None:
            continue
        pool = pool.drop_columns(
            [c for c in cols if c in side.column_names and c in pool.column_names]
        )
        # Left join by id (Arrow's hash join cannot carry list columns such as messages).
        where = pc.index_in(pool.column("id"), value_set=side.column("id").combine_chunks())
        for c in cols:
            if c in side.column_names:
                pool = pool.append_column(c, pc.take(side.column(c).combine_chunks(), where))
    pool = pool.take(pc.sort_indices(pool, [("id", "ascending")]))
    return pool, joined


def _gdo_config(cfg: SelectJobConfig) -> GDOConfig:
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; use one of {sorted(PRESETS)}")
    bad = set(cfg.ablation) - {"no-vds", "no-sc", "no-ppl"}
    if bad:
        raise ValueError(f"unknown ablation {sorted(bad)}; use no-vds, no-sc, no-ppl")
    score = GDOScoreConfig(
        use_vds="no-vds" not in cfg.ablation,
        use_sc="no-sc" not in cfg.ablation,
        use_ppl="no-ppl" not in cfg.ablation,
    )
    return replace(
        PRESETS[cfg.preset],
        budget=cfg.budget,
        score=score,
        drop_duplicates=not cfg.keep_duplicates,
        allow_missing_descriptors=cfg.allow_missing_descriptors,
    )


def method_config(cfg: SelectJobConfig):
    """The frozen config of the chosen method (recorded in the manifest)."""
    dd = not cfg.keep_duplicates
    budget = 0.3 if cfg.budget is None else cfg.budget
    if cfg.method == "gdo":
        return _gdo_config(cfg)
    if cfg.method == "uniform":
        return UniformConfig(
            preset=_gdo_config(replace(cfg, budget=None)),
            multiplier=cfg.multiplier,
            budget=cfg.budget,
            drop_duplicates=dd,
        )
    if cfg.method == "mmssr":
        return MMSSRConfig(budget=budget, threshold=cfg.threshold, drop_duplicates=dd)
    if cfg.method == "ost":
        return OSTConfig(budget=budget, harmful=cfg.harmful, drop_duplicates=dd)
    if cfg.method in ("pism", "cmab"):
        levels = cfg.levels or DifficultyConfig.levels
        return DifficultyConfig(
            signal=cfg.method,
            levels=levels,
            plan=not cfg.levels,
            budget=cfg.budget,
            drop_duplicates=dd,
        )
    if cfg.method in ("random", "full", "per_category"):
        return SimpleConfig(budget=budget, drop_duplicates=dd)
    raise ValueError(f"unknown method {cfg.method!r}; use one of {METHODS}")


RUNNERS = {
    "gdo": gdo_select,
    "uniform": uniform_select,
    "mmssr": mmssr_select,
    "ost": ost_select,
    "pism": difficulty_select,
    "cmab": difficulty_select,
    "random": random_select,
    "full": full_select,
    "per_category": per_category_select,
}


def _manifest(
    cfg, mconfig, pool: pa.Table, joined: dict, subset: Subset, order: OrderConfig
) -> dict:
    report = dict(subset.report)
    strata = report.pop("strata_selected", None)
    return {
        "method": cfg.method,
        "preset": cfg.preset if cfg.method in ("gdo", "uniform") else None,
        "seed": cfg.seed,
        "budget": report.pop("budget", None),
        "job": _job_record(cfg),
        "config": asdict(mconfig),
        "order": asdict(order),
        "pool": {
            "rows": pool.num_rows,
            "fingerprint": pool_fingerprint(pool, pool.column_names),
            "joined": joined,
        },
        "selected": {
            "rows": int(len(subset.rows)),
            "distinct": int(len(np.unique(subset.rows))),
            "not_selected": int(pool.num_rows - len(np.unique(subset.rows))),
        },
        "counts": {
            "stage": composition_of(subset.stage),
            **composition(pool, subset.rows, COUNT_COLUMNS),
            "stratum": strata,
        },
        "report": report,
        **_ost_target(cfg),
    }


def _ost_target(cfg) -> dict:
    """An OST subset's manifest says where its utilities' target set V came from."""
    scored = storage.join(cfg.run, "scored")
    if cfg.method != "ost" or not is_complete(scored):
        return {}
    return {"ost_target": read_counts(scored).get("ost_target", "not recorded")}


def _job_record(cfg: SelectJobConfig) -> dict:
    """The job config as the manifest keeps it: without the run path and --force."""
    return json.loads(json.dumps(asdict(cfg) | {"run": None, "force": False}))


def composition_of(values: np.ndarray) -> dict:
    names, counts = np.unique(values.astype(str), return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


def run_select(cfg: SelectJobConfig) -> dict:
    """Run one selection; returns the counts written to the subset's _SUCCESS marker."""
    out = storage.join(cfg.run, "subsets", cfg.subset_name)
    if is_complete(out) and not cfg.force:
        previous = json.loads(storage.read_text(storage.join(out, "manifest.json")))["job"]
        if previous != _job_record(cfg):
            raise FileExistsError(
                f"{out} was built with another config; pass --force to rebuild or --name"
            )
        return read_counts(out) | {"skipped": True}
    mconfig = method_config(cfg)
    if cfg.order not in ORDERS:
        raise ValueError(f"unknown order {cfg.order!r}; use one of {ORDERS}")
    pool, joined = load_pool(cfg.run)
    subset = RUNNERS[cfg.method](pool, mconfig, seed=cfg.seed)
    order = OrderConfig(
        order=cfg.order, stages=cfg.stages, by=cfg.order_by, with_replacement=cfg.with_replacement
    )
    subset = apply_order(pool, subset, order, seed=cfg.seed)
    manifest = _manifest(cfg, mconfig, pool, joined, subset, order)
    tmp = storage.staging_dir(out)
    ids = pc.take(pool.column("id"), pa.array(subset.rows))
    table = pa.table(
        {
            "id": ids,
            "position": np.arange(len(subset.rows), dtype=np.int64),
            "stage": pa.array(subset.stage.astype(str).tolist(), pa.string()),
        }
    )
    write_parquet_atomic(table, storage.join(tmp, "subset.parquet"))
    if subset.flagged is not None:
        flagged = pool.select(["id", "ost_utility"]).take(pa.array(subset.flagged))
        write_parquet_atomic(flagged, storage.join(tmp, "flagged.parquet"))
    text = json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable)
    storage.write_text(storage.join(tmp, "manifest.json"), text)
    storage.commit_dir(tmp, out)
    counts = {
        "pool": pool.num_rows,
        "selected": manifest["selected"]["rows"],
        "not_selected": manifest["selected"]["not_selected"],
    }
    mark_complete(out, counts)
    return counts | {"manifest": manifest}


def _jsonable(x):
    if isinstance(x, np.integer | np.floating | np.bool_):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x)}")


def _table(manifest: dict) -> str:
    """A short summary: rows per stage and per modality / category."""
    lines = [f"{'what':<12} {'value':<28} {'rows':>10}"]
    for key in ("stage", "media_type", "category"):
        for value, n in list((manifest["counts"].get(key) or {}).items())[:8]:
            lines.append(f"{key:<12} {value:<28} {n:>10}")
    return "\n".join(lines)


def _tuple(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def parse_budget(text: str) -> int | float:
    """ "300" is a row count, "0.3" / "1.0" / "3e-1" a fraction (checked by resolve_budget)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_args(argv: list[str] | None) -> SelectJobConfig:
    p = argparse.ArgumentParser(
        prog="mmcurate select",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", required=True, help="run directory (reads scored/, dedup/, clusters/)")
    p.add_argument("--method", default="gdo", choices=METHODS)
    p.add_argument("--preset", default="temp+", help="GDO preset: minloss, diverse, temp, temp+")
    p.add_argument(
        "--budget",
        type=parse_budget,
        default=None,
        help="row count (an integer >= 1) or a fraction of the eligible pool in (0, 1]; 1.0 = all",
    )
    p.add_argument("--order", default="mixing", choices=ORDERS)
    p.add_argument("--stages", default="general,chart,ocr", help="curriculum category stages")
    p.add_argument("--order-by", default=None, help="curriculum by a column ascending (-col: desc)")
    p.add_argument(
        "--with-replacement", action="store_true", help="balanced: repeat small categories"
    )
    p.add_argument("--name", default=None, help="subset name (default METHOD[-PRESET])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--multiplier", type=float, default=1.0, help="uniform: 10 gives Uni-10x")
    p.add_argument("--ablation", default="", help="gdo: comma list of no-vds, no-sc, no-ppl")
    p.add_argument("--threshold", type=float, default=0.0, help="mmssr score threshold")
    p.add_argument("--harmful", type=parse_budget, default=0.05, help="ost: share or count flagged")
    p.add_argument("--levels", default="", help="pism/cmab: comma list of levels (default: plan)")
    p.add_argument("--keep-duplicates", action="store_true", help="keep dup_keep == false rows")
    p.add_argument(
        "--allow-missing-descriptors",
        action="store_true",
        help="gdo: select even when descriptor columns are missing (they count as neutral)",
    )
    p.add_argument("--force", action="store_true", help="rebuild a complete subset")
    a = p.parse_args(argv)
    budget = a.budget
    return SelectJobConfig(
        run=a.run,
        method=a.method,
        preset=a.preset,
        budget=budget,
        order=a.order,
        stages=_tuple(a.stages),
        order_by=a.order_by,
        with_replacement=a.with_replacement,
        name=a.name,
        seed=a.seed,
        multiplier=a.multiplier,
        ablation=_tuple(a.ablation),
        threshold=a.threshold,
        harmful=a.harmful,
        levels=_tuple(a.levels),
        keep_duplicates=a.keep_duplicates,
        allow_missing_descriptors=a.allow_missing_descriptors,
        force=a.force,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    print(f"[mmcurate] select config: {asdict(cfg)}")
    started = time.time()
    counts = run_select(cfg)
    manifest = counts.pop("manifest", None)
    print(stage_line(f"select {cfg.subset_name}", counts, started))
    if manifest is not None:
        print(_table(manifest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

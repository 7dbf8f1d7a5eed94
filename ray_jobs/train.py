"""`mmcurate train --run DIR --subset NAME [--algo sft|grpo|hierarchical]`: train on a subset.

Also `python -m ray_jobs.train ...` for `ray job submit`. The job reads the subset
(`DIR/subsets/NAME/`) and its rows (`DIR/scored/` or `DIR/pool/`), writes the ordered training
rows and the held-out rows to `DIR/train/NAME/`, then runs SFT, GRPO, or SFT then GRPO
(hierarchical) with Ray Train. Outputs: `metrics.jsonl` (held-out accuracy per category vs
samples seen), `model/`, `summary.json`, and `_SUCCESS` last; a rerun of a finished job skips
it, a rerun of a killed one resumes from its last checkpoint.

Held-out rows: `--heldout POOL` names a clean pool (a synthetic pool directory with
ground_truth.parquet: defect-free rows, 100 per category; or Parquet of our schema). Without
it, ids in a CRC32 bucket (`heldout_fraction`, 5%) are taken out of training and evaluated on,
after dedup and without duplicates of training rows, flagged rows or `model_error` rows; the
split is the `heldout_split` line of `metrics.jsonl`.
Model: `--model PATH` (any HF image-text-to-text model directory); default `DIR/models/tiny`,
built offline on first use (the ~1M-parameter Qwen2-VL of ARCHITECTURE.md section 6).

DIR, the model and the held-out pool may be object-store URIs (docs/storage.md): the job
reads and writes `DIR/train/NAME/` through operators/storage.py, the workers copy the model to
a local cache, Ray Train keeps its checkpoints under `DIR/train/NAME/ray/` in the bucket (a
rerun anywhere resumes from there), and `metrics.jsonl` is rewritten whole at each line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass, field

import pyarrow as pa

from operators import storage
from ray_jobs.config_loading import build_config, load_yaml, to_plain
from ray_jobs.rundir import ensure_ray, is_complete, mark_complete, read_counts, stage_line
from training.grpo import GrpoConfig
from training.hierarchical import HierarchicalConfig
from training.sft import SftConfig

__all__ = ["TrainJobConfig", "main", "prepare", "train"]

ALGOS = ("sft", "grpo", "hierarchical")
PLACEHOLDERS = {"model": "", "rows": "", "out": ""}  # filled in by the job


@dataclass(frozen=True)
class TrainJobConfig:
    """A training job on one subset of a run."""

    run: str  # the run directory
    subset: str  # subsets/NAME
    algo: str = "sft"  # sft | grpo | hierarchical
    model: str = ""  # model directory (local or URI); "" = RUN/models/tiny (built if absent)
    heldout: str = ""  # clean held-out pool; "" = a hash split of the run's rows
    heldout_fraction: float = 0.05  # share of ids held out when heldout is ""
    heldout_per_category: int = 100
    num_workers: int = 2
    use_gpu: bool = False
    reference: str = "full"  # a full-data subset trained in this run, for "% of full"
    sft: SftConfig = field(default_factory=lambda: SftConfig(**PLACEHOLDERS))
    grpo: GrpoConfig = field(default_factory=lambda: GrpoConfig(**PLACEHOLDERS))
    hierarchical: HierarchicalConfig = field(default_factory=HierarchicalConfig)

    @property
    def out(self) -> str:
        return storage.join(self.run, "train", self.subset)


def _model(config: TrainJobConfig) -> str:
    """The model to start from: `config.model`, else RUN/models/tiny (built if absent; for a
    remote run built locally and uploaded, config.json last: the marker a rerun checks)."""
    if config.model:
        return config.model
    path = storage.join(config.run, "models", "tiny")
    if storage.exists(storage.join(path, "config.json")):
        return path
    from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

    if not storage.is_remote(path):
        build_tiny_qwen2_vl(path, TinyConfig())
        return path
    with tempfile.TemporaryDirectory() as local:
        build_tiny_qwen2_vl(local, TinyConfig())
        config_json = storage.read_bytes(os.path.join(local, "config.json"))
        os.remove(os.path.join(local, "config.json"))
        storage.upload_dir(local, path)
        storage.write_bytes(storage.join(path, "config.json"), config_json)
    return path


def _heldout(config: TrainJobConfig) -> tuple[pa.Table, dict]:
    """The held-out rows and where they came from (the `heldout_split` record)."""
    from operators.schema import ROW_SCHEMA
    from training.data import heldout_rows, is_heldout, parquet_dataset, rows_dir

    truth = storage.join(config.heldout, "ground_truth.parquet") if config.heldout else ""
    if truth and storage.exists(truth):
        held = heldout_rows(config.heldout, config.heldout_per_category)
        return held, {"source": f"clean held-out pool {config.heldout} (ground truth)"}
    source = config.heldout or rows_dir(config.run)
    rows = parquet_dataset(source).to_table().to_pylist()
    info: dict = {"source": f"held-out pool {config.heldout}"}
    if not config.heldout:
        rows = [r for r in rows if is_heldout(r["id"], config.heldout_fraction)]
        rows, info = _clean_split(config, rows)
    kept, per = [], {}
    for row in rows:
        category = row.get("category") or "none"
        if per.get(category, 0) < config.heldout_per_category:
            per[category] = per.get(category, 0) + 1
            kept.append(row)
    return pa.Table.from_pylist(kept, schema=ROW_SCHEMA), info


def _ids_of(path: str) -> set[str]:
    if not storage.exists(path):
        return set()
    return set(map(str, storage.read_parquet(path, columns=["id"]).column("id").to_pylist()))


def _clean_split(config: TrainJobConfig, rows: list[dict]) -> tuple[list[dict], dict]:
    """The hash bucket's rows, taken after dedup: less rows dedup dropped (`dup_keep` false),
    rows in a duplicate cluster with a training row of the subset, rows a selection flagged
    (any RUN/subsets/*/flagged.parquet: OST's harmful, wrong-answer-like rows) and rows the
    proxy could not process (`model_error`)."""
    from training.data import is_heldout, parquet_dataset

    dedup_dir = storage.join(config.run, "dedup")
    dedup = {}
    shards = storage.listdir(dedup_dir) if storage.exists(dedup_dir) else []
    if any(n.endswith(".parquet") for n in shards):
        table = parquet_dataset(dedup_dir).to_table(columns=["id", "dup_cluster", "dup_keep"])
        dedup = {str(r["id"]): r for r in table.to_pylist()}
    folder = storage.join(config.run, "subsets", config.subset)
    subset_ids = set().union(
        *(
            _ids_of(storage.join(folder, n))
            for n in storage.listdir(folder)
            if n.endswith(".parquet") and n != "flagged.parquet"
        )
    )
    training = {i for i in subset_ids if not is_heldout(i, config.heldout_fraction)}
    train_clusters = {dedup[i]["dup_cluster"] for i in training if i in dedup}
    flagged: set[str] = set()
    subsets_dir = storage.join(config.run, "subsets")
    for name in storage.listdir(subsets_dir) if storage.exists(subsets_dir) else []:
        flagged |= _ids_of(storage.join(subsets_dir, name, "flagged.parquet"))
    excluded = {"dup_keep_false": 0, "duplicate_of_training": 0, "flagged": 0, "model_error": 0}
    kept = []
    for row in rows:
        info = dedup.get(str(row["id"]), {})
        if row.get("model_error"):
            excluded["model_error"] += 1
        elif info and info.get("dup_keep") is False:
            excluded["dup_keep_false"] += 1
        elif info and info.get("dup_cluster") in train_clusters:
            excluded["duplicate_of_training"] += 1
        elif str(row["id"]) in flagged:
            excluded["flagged"] += 1
        else:
            kept.append(row)
    source = f"hash split ({config.heldout_fraction} of ids) of the run's rows"
    record = {"source": source, "after_dedup": bool(dedup), "excluded": excluded}
    return kept, record


def prepare(config: TrainJobConfig) -> dict:
    """Write OUT/rows.parquet (ordered training rows) and OUT/heldout.parquet; counts."""
    from operators.formats.writers import write_parquet_atomic
    from training.data import ordered_rows

    fraction = 0.0 if config.heldout else config.heldout_fraction
    rows, counts = ordered_rows(config.run, config.subset, fraction)
    write_parquet_atomic(rows, storage.join(config.out, "rows.parquet"))
    heldout, split = _heldout(config)
    write_parquet_atomic(heldout, storage.join(config.out, "heldout.parquet"))
    counts["heldout_rows"] = heldout.num_rows
    counts["heldout_split"] = split | {"rows": heldout.num_rows}
    return counts


def _write_rows(table: pa.Table, path: str) -> str:
    from operators.formats.writers import write_parquet_atomic

    write_parquet_atomic(table, path)
    return path


def _stage_configs(config: TrainJobConfig, model: str):
    """(SftConfig, GrpoConfig) with paths filled in for this job's algo."""
    join = storage.join
    out, heldout = config.out, join(config.out, "heldout.parquet")
    rows = join(out, "rows.parquet")
    if config.algo == "hierarchical":
        from training.hierarchical import split_stages

        sft_rows, grpo_rows = split_stages(storage.read_parquet(rows), config.hierarchical)
        sft_path = _write_rows(sft_rows, join(out, "sft", "rows.parquet"))
        grpo_path = _write_rows(grpo_rows, join(out, "grpo", "rows.parquet"))
        # GRPO sees video frames as images; SFT trains on the same form.
        sft = dataclasses.replace(
            config.sft,
            model=model,
            rows=sft_path,
            heldout=heldout,
            out=join(out, "sft"),
            video_as_frames=True,
        )
        grpo = dataclasses.replace(
            config.grpo,
            model=join(out, "sft", "model"),
            rows=grpo_path,
            heldout=heldout,
            out=join(out, "grpo"),
        )
        return sft, grpo
    sft = dataclasses.replace(config.sft, model=model, rows=rows, heldout=heldout, out=out)
    grpo = dataclasses.replace(config.grpo, model=model, rows=rows, heldout=heldout, out=out)
    return sft, grpo


def train(config: TrainJobConfig) -> dict:
    """Run the job; returns its summary (also written to OUT/summary.json)."""
    from training.evaluate import append_metrics, summarize
    from training.grpo import run_grpo
    from training.hierarchical import merge_metrics
    from training.sft import run_sft

    if config.algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {config.algo!r}")
    if is_complete(config.out):
        return read_counts(config.out)
    started = time.time()
    ensure_ray()
    counts = prepare(config)
    print(stage_line("train prepare", {k: v for k, v in counts.items()}, started), flush=True)
    sft, grpo = _stage_configs(config, _model(config))
    scaling = {"num_workers": config.num_workers, "use_gpu": config.use_gpu}
    name = f"{config.subset}-{config.algo}"
    if config.algo in ("sft", "hierarchical"):
        run_sft(sft, name=f"{name}-sft", **scaling)
    if config.algo in ("grpo", "hierarchical"):
        run_grpo(grpo, name=f"{name}-grpo", **scaling)
    if config.algo == "hierarchical":
        merge_metrics(config.out)
        _link_final_model(config.out)
    record = {"event": "heldout_split", **counts["heldout_split"]}
    append_metrics(storage.join(config.out, "metrics.jsonl"), record)
    reference = storage.join(config.run, "train", config.reference, "metrics.jsonl")
    has_reference = config.reference != config.subset and storage.exists(reference)
    summary = {
        **summarize(
            storage.join(config.out, "metrics.jsonl"), reference if has_reference else None
        ),
        "counts": counts,
        "algo": config.algo,
        "wall_s": time.time() - started,
    }
    text = json.dumps(summary, indent=2, sort_keys=True)
    storage.write_text(storage.join(config.out, "summary.json"), text)
    mark_complete(config.out, summary)
    print(stage_line("train", {"samples_seen": summary.get("samples_seen")}, started))
    return summary


def _link_final_model(out: str) -> None:
    """OUT/model -> the GRPO stage's model (the plan's result): a relative symlink locally; an
    object store has no links, so there OUT/model is a copy of OUT/grpo/model."""
    if storage.is_remote(out):
        storage.copy_dir(storage.join(out, "grpo", "model"), storage.join(out, "model"))
        return
    target = os.path.join(out, "model")
    if os.path.lexists(target):
        os.remove(target)
    os.symlink(os.path.join("grpo", "model"), target)


def parse(argv: list[str]) -> tuple[TrainJobConfig, bool]:
    parser = argparse.ArgumentParser(
        prog="mmcurate train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--subset", required=True, help="subset name (DIR/subsets/NAME)")
    parser.add_argument("--algo", default="sft", choices=ALGOS)
    parser.add_argument("--config", help="YAML with keys of TrainJobConfig (sft:, grpo:, ...)")
    parser.add_argument("--model", help="model directory (local path or URI)")
    parser.add_argument("--heldout", help="clean held-out pool directory")
    parser.add_argument("--workers", type=int, help="Ray Train workers")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker")
    parser.add_argument("--dry-run", action="store_true", help="print the config and stop")
    args = parser.parse_args(argv)
    data = load_yaml(args.config) if args.config else {}
    data.update(run=args.run, subset=args.subset, algo=args.algo)
    for key, value in (
        ("model", args.model),
        ("heldout", args.heldout),
        ("num_workers", args.workers),
        ("use_gpu", args.gpu or None),
    ):
        if value is not None:
            data[key] = value
    for section in ("sft", "grpo"):
        data[section] = {**PLACEHOLDERS, **(data.get(section) or {})}
    config = build_config(TrainJobConfig, data, args.config or "command line")
    return config, args.dry_run


def main(argv: list[str] | None = None) -> int:
    import sys

    import yaml

    config, dry_run = parse(sys.argv[1:] if argv is None else argv)
    print(yaml.safe_dump({"train": to_plain(config)}, sort_keys=False), flush=True)
    if dry_run:
        return 0
    summary = train(config)
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

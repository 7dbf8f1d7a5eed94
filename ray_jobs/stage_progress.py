"""The live bar of each long stage, measured from what the stage has written to the run.

score: rows in the finished shard files of `RUN/scored/` and `RUN/quarantine/score/` against
the rows ingest kept; each training run: the optimizer step of the latest line of
`OUT/metrics.jsonl` against `max_steps`; the proxy warm-up and dedup write nothing until they
end, so their bar shows the elapsed time only (no total, no ETA).
"""

from __future__ import annotations

import json
from contextlib import nullcontext

from operators import storage
from ray_jobs.console import live_bar
from ray_jobs.recipe import Recipe
from ray_jobs.rundir import is_complete, read_counts

__all__ = ["stage_bar", "train_bar"]


class _ShardRows:
    """Rows in the finished Parquet shards of some folders (each file's footer read once)."""

    def __init__(self, folders: list[str]):
        self.folders = folders
        self.seen: dict[str, int] = {}

    def __call__(self) -> int:
        for folder in self.folders:
            if not storage.exists(folder):
                continue
            for name in storage.listdir(folder):
                path = storage.join(folder, name)
                if name.endswith(".parquet") and path not in self.seen:
                    self.seen[path] = storage.parquet_file(path).metadata.num_rows
        return sum(self.seen.values())


def _score_bar(recipe: Recipe):
    pool = storage.join(recipe.run, "pool")
    total = read_counts(pool).get("kept", 0) if is_complete(pool) else 0
    folders = [storage.join(recipe.run, "scored"), storage.join(recipe.run, "quarantine", "score")]
    return live_bar("score", total, "rows", _ShardRows(folders))


def _latest_step(metrics: str) -> int:
    if not storage.exists(metrics):
        return 0
    steps = [json.loads(line).get("step") or 0 for line in storage.read_text(metrics).splitlines()]
    return max(steps, default=0)


def train_bar(config):
    """The bar of one training run (`TrainJobConfig`): optimizer steps out of max_steps."""
    if is_complete(config.out):
        return nullcontext()
    section = config.grpo if config.algo == "grpo" else config.sft
    total = getattr(section, "max_steps", 0) or None
    metrics = storage.join(config.out, "metrics.jsonl")
    return live_bar(f"train {config.subset}", total, "steps", lambda: _latest_step(metrics))


def stage_bar(recipe: Recipe, name: str):
    """The stage's bar (a context manager); stages that take seconds get none."""
    if name == "score":
        return _score_bar(recipe)
    if name in ("proxy", "dedup"):
        return live_bar(name, None, "", lambda: 0)
    return nullcontext()

"""Run directories: completion markers, counts files and the local Ray session.

A stage writes its outputs under temporary names, renames them when complete, and writes
`_SUCCESS` (with its counts) last; a rerun skips a stage or shard whose marker exists. A run
directory is a local path or an object-store URI (`operators/storage.py`): on a store the
outputs are whole objects and `_SUCCESS`, written last, is what makes a stage complete.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

from operators import storage
from operators.row_errors import rows_read

__all__ = [
    "ensure_ray",
    "finish_sharded_stage",
    "is_complete",
    "mark_complete",
    "read_counts",
    "stage_line",
]

MARKER = "_SUCCESS"


def mark_complete(directory: str, counts: dict) -> None:
    """Write the completion marker of `directory`, holding the stage's counts as JSON."""
    text = json.dumps(counts, indent=2, sort_keys=True)
    storage.write_text(storage.join(directory, MARKER), text)


def finish_sharded_stage(kept_dir: str, quarantine_dir: str, names: list[str], extra=None) -> dict:
    """Count a sharded stage's outputs from the written files (shard NAME in both folders),
    check each shard's kept + quarantined against the rows it read from its source (recorded
    in the quarantine shard's metadata), mark both folders complete and return {input, kept,
    quarantined, reasons, shards}, plus what `extra(kept_dir, names)` (optional) counts. A
    shard whose numbers disagree fails the stage."""
    read = kept = quarantined = 0
    reasons: Counter = Counter()
    for name in names:
        shard_kept = storage.parquet_file(storage.join(kept_dir, name)).metadata.num_rows
        bad = storage.read_parquet(storage.join(quarantine_dir, name), columns=["reason"])
        shard_read = rows_read(storage.read_schema(storage.join(quarantine_dir, name)))
        if shard_read is None or shard_read != shard_kept + bad.num_rows:
            raise RuntimeError(
                f"{kept_dir} shard {name}: read {shard_read} rows from its source, but wrote "
                f"{shard_kept} kept + {bad.num_rows} quarantined = {shard_kept + bad.num_rows}"
            )
        read, kept, quarantined = read + shard_read, kept + shard_kept, quarantined + bad.num_rows
        reasons.update(bad.column("reason").to_pylist())
    counts = {
        "input": read,
        "kept": kept,
        "quarantined": quarantined,
        "reasons": dict(sorted(reasons.items())),
        "shards": len(names),
    }
    if extra is not None:
        counts.update(extra(kept_dir, names))
    mark_complete(quarantine_dir, counts)
    mark_complete(kept_dir, counts)
    return counts


def is_complete(directory: str) -> bool:
    return storage.exists(storage.join(directory, MARKER))


PROVENANCE_KEYS = ("fingerprint", "stage_config")  # what `mmcurate run` adds to a marker


def read_counts(directory: str) -> dict:
    """The counts a stage's completion marker holds (without the run's fingerprint record)."""
    marker = json.loads(storage.read_text(storage.join(directory, MARKER)))
    return {k: v for k, v in marker.items() if k not in PROVENANCE_KEYS}


def stage_line(stage: str, counts: dict, started: float) -> str:
    """One progress line: the stage, its counts and the elapsed time."""
    parts = " ".join(f"{k}={v}" for k, v in counts.items() if not isinstance(v, dict))
    return f"[mmcurate] {stage}: {parts} ({time.time() - started:.1f}s)"


def ensure_ray(num_cpus: int | None = None) -> None:
    """Join the cluster named by RAY_ADDRESS, or start a local Ray without a dashboard.

    Without RAY_ADDRESS the job always starts its own Ray (`address="local"`): it never joins
    whatever cluster `/tmp/ray/ray_current_cluster` names (another user's, or one left by a
    killed run), so a restarted job does not depend on what a crash left behind.
    """
    import ray

    if ray.is_initialized():
        return
    to_driver = os.environ.get("MMCURATE_VERBOSE", "1") == "1"  # ray_jobs/console.py: -v
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=to_driver)
    else:
        ray.init(
            address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=to_driver
        )

"""`mmcurate ingest`: read a pool (LLaVA JSON / JSONL / Parquet) into `DIR/pool/` shards.

Each input chunk is one Ray Data task that parses, validates (fields, media paths inside the
root, media that decodes) and writes `pool/part-NNNNN.parquet` plus
`quarantine/ingest-NNNNN.parquet`. Shards are written atomically and skipped on a rerun, so
a killed ingest resumes; counts reconcile: input rows = pool rows + quarantined rows. The
input, the media root and the run may be object-store URIs: each task reads its chunk's byte
range (or row groups) from the store and writes its shards there.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass

from operators import storage
from operators.formats.readers import (
    Chunk,
    input_files,
    json_array_to_jsonl,
    plan_chunks,
    read_chunk,
)
from operators.formats.records import RecordOptions
from operators.formats.writers import write_parquet_atomic
from ray_jobs.rundir import ensure_ray, finish_sharded_stage, is_complete, read_counts, stage_line

__all__ = ["IngestConfig", "ingest", "main"]


@dataclass(frozen=True)
class IngestConfig:
    input: str  # a pool file (.json list, .jsonl, .parquet) or a directory of them
    run: str  # the run directory
    media_root: str | None = None  # media paths resolve here; default: the input's folder
    source: str | None = None  # source name for rows without one; default: the file stem
    check_media: bool = True  # open every media file far enough to know it decodes
    chunk_bytes: int | None = None  # JSONL bytes per chunk (= output shard); None: by size


def _stage_json_lists(config: IngestConfig) -> list[str]:
    """The input's data files, each `.json` list rewritten as JSONL under the run (streaming)."""
    files = []
    for file in input_files(config.input):
        if file.endswith(".json"):
            target = storage.join(config.run, "ingest_staging", os.path.basename(file) + "l")
            if not storage.exists(target):
                json_array_to_jsonl(file, target)
            file = target
        files.append(file)
    return files


def _ingest_chunks(batch: dict, options: RecordOptions, run: str) -> dict:
    """Ray Data UDF: parse each chunk of the batch and write its two shards."""
    out = {"index": [], "kept": [], "quarantined": []}
    for spec in batch["chunk"]:
        chunk = Chunk(**json.loads(spec))
        rows, bad = read_chunk(chunk, options)
        name = f"part-{chunk.index:05d}.parquet"
        write_parquet_atomic(bad, storage.join(run, "quarantine", "ingest", name))
        write_parquet_atomic(rows, storage.join(run, "pool", name))
        out["index"].append(chunk.index)
        out["kept"].append(rows.num_rows)
        out["quarantined"].append(bad.num_rows)
    return out


def _chunk_bytes(files: list[str], num_cpus: int) -> int:
    total = sum(storage.size(f) for f in files)
    return int(min(4 << 20, max(64 << 10, total // (4 * num_cpus) + 1)))


def ingest(config: IngestConfig) -> dict:
    """Run the ingest stage; returns counts {input, kept, quarantined, reasons}."""
    import ray

    pool_dir = storage.join(config.run, "pool")
    if is_complete(pool_dir):
        return read_counts(pool_dir)
    ensure_ray()
    source = config.source or os.path.splitext(os.path.basename(config.input.rstrip("/")))[0]
    media_root = config.media_root or (
        config.input if storage.isdir(config.input) else os.path.dirname(config.input) or "."
    )
    options = RecordOptions(media_root=media_root, source=source, check_media=config.check_media)
    num_cpus = int(ray.cluster_resources().get("CPU", 1))
    files = _stage_json_lists(config)
    chunks = plan_chunks(files, config.chunk_bytes or _chunk_bytes(files, num_cpus))
    written = set(storage.listdir(pool_dir))
    todo = [c for c in chunks if f"part-{c.index:05d}.parquet" not in written]
    if todo:
        items = [{"chunk": json.dumps(asdict(c))} for c in todo]
        ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _ingest_chunks, fn_kwargs={"options": options, "run": config.run}, batch_size=1
        ).materialize()
    return _finish(config.run, chunks)


def _finish(run: str, chunks: list[Chunk]) -> dict:
    """Sum the per-shard counts from the written files and mark the stage complete."""
    names = [f"part-{chunk.index:05d}.parquet" for chunk in chunks]
    pool, quarantine = storage.join(run, "pool"), storage.join(run, "quarantine", "ingest")
    return finish_sharded_stage(pool, quarantine, names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate ingest", description=__doc__)
    parser.add_argument("--input", required=True, help="pool file or directory")
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--media-root", default=None, help="default: the input's folder")
    parser.add_argument("--source", default=None, help="source name for rows without one")
    parser.add_argument(
        "--no-check-media",
        action="store_true",
        help="do not open media files at ingest (paths are still checked)",
    )
    args = parser.parse_args(argv)
    config = IngestConfig(
        args.input, args.run, args.media_root, args.source, not args.no_check_media
    )
    print(f"[mmcurate] ingest config: {asdict(config)}")
    started = time.time()
    counts = ingest(config)
    print(stage_line("ingest", counts, started))
    print(f"[mmcurate] quarantined by reason: {counts['reasons']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`mmcurate ingest`: read a pool (formats in `operators/formats/`) into `DIR/pool/` shards.

Each input file's format is detected by content (or forced by `input_format`); a JSON list or
a gzip / zstd text file is first staged as plain JSONL under `RUN/ingest_staging/`
(streaming). Each chunk is then one Ray Data task that parses, validates (fields, media
placeholders, media paths inside the root, media that decodes) and writes
`pool/part-NNNNN.parquet` plus `quarantine/ingest/part-NNNNN.parquet`; embedded media go once
to `RUN/media/`. A global step then makes ids unique across shards (`duplicate_ids.py`).
Shards are written atomically and skipped on a rerun, so a killed ingest resumes; counts
reconcile: input rows = pool rows + quarantined rows. The input, the media root and the run
may be object-store URIs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass

from operators import storage
from operators.formats.detect import compression_of, detect_format
from operators.formats.duplicate_ids import POLICIES, resolve_duplicate_ids
from operators.formats.readers import (
    Chunk,
    decompress_to,
    input_files,
    json_array_to_jsonl,
    normalize_record,
    plan_chunks,
    quarantine_entry,
    read_chunk,
)
from operators.formats.records import RecordOptions, RowError, jsonable
from operators.formats.webdataset import sample_record
from operators.formats.writers import write_parquet_atomic
from operators.row_errors import describe, is_row_error, with_rows_read
from operators.schema import quarantine_table, rows_table
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
    input_format: str | None = None  # force one of json, jsonl, parquet; None: by content
    # the input's field / column names mapped to ours, e.g. {"img": "images", "chat": "messages"}
    columns: dict[str, str] | None = None
    on_duplicate_id: str = "quarantine"  # or "rename": X -> X#dup1, X#dup2, ...


def _stage_inputs(config: IngestConfig) -> list[tuple[str, str, str]]:
    """(file to chunk, format, the user's file) for each data file of the input: a JSON list
    and a compressed JSONL are rewritten as plain JSONL under the run (streaming, once)."""
    files = []
    for file in input_files(config.input):
        kind = detect_format(file, config.input_format)
        if kind == "json" or (kind == "jsonl" and compression_of(file)):
            stem = os.path.basename(file)
            target = storage.join(config.run, "ingest_staging", f"{len(files):05d}-{stem}.jsonl")
            if not storage.exists(target):
                (json_array_to_jsonl if kind == "json" else decompress_to)(file, target)
            files.append((target, "jsonl", file))
        else:
            files.append((file, kind, ""))
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


def _sample_row(sample: dict, options: RecordOptions) -> dict:
    """Ray Data UDF, one WebDataset sample: its row or its quarantine entry, as JSON."""
    url, key = sample["__url__"], sample["__key__"]
    origin = f"{url}:{key}"
    try:
        record, text = sample_record(sample, options)
        row = normalize_record(record, origin, text, options)
        return {"url": url, "key": key, "row": json.dumps(row), "bad": ""}
    except RowError as error:
        raw = json.dumps({k: v for k, v in sample.items() if k == "json"}, default=jsonable)
        entry = quarantine_entry(origin, error.reason, str(error), raw)
    except Exception as error:
        if not is_row_error(error):
            raise
        entry = quarantine_entry(origin, "row_exception", describe(error), repr(sample.keys()))
    return {"url": url, "key": key, "row": "", "bad": json.dumps(entry)}


def _write_tar_shards(name: str, samples: list[dict], run: str) -> None:
    """The two shards of one tar, its samples in key order."""
    samples = sorted(samples, key=lambda s: s["key"])
    rows = [json.loads(s["row"]) for s in samples if s["row"]]
    bad = [json.loads(s["bad"]) for s in samples if s["bad"]]
    quarantine = with_rows_read(quarantine_table(bad), len(samples))
    write_parquet_atomic(quarantine, storage.join(run, "quarantine", "ingest", name))
    write_parquet_atomic(rows_table(rows), storage.join(run, "pool", name))


def _ingest_webdataset(chunks: list[Chunk], options: RecordOptions, run: str) -> None:
    """WebDataset tars through Ray Data's reader (raw bytes, never unpickled): the tasks turn
    each sample into a row or a quarantine entry (its media written to the run's store); the
    driver, receiving them in file order, writes each tar's shards when the tar ends."""
    import ray

    index = {storage.local_path(c.path): c.index for c in chunks}
    dataset = ray.data.read_webdataset([c.path for c in chunks], decoder=None)
    dataset.context.execution_options.preserve_order = True
    current, samples, done = None, [], set()
    for sample in dataset.map(_sample_row, fn_kwargs={"options": options}).iter_rows():
        if sample["url"] != current and samples:
            _write_tar_shards(f"part-{index[current]:05d}.parquet", samples, run)
            samples, done = [], done | {current}
        current = sample["url"]
        samples.append(sample)
    if samples:
        _write_tar_shards(f"part-{index[current]:05d}.parquet", samples, run)
        done.add(current)
    for url in set(index) - done:  # a tar without samples still has its (empty) shards
        _write_tar_shards(f"part-{index[url]:05d}.parquet", [], run)


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
    if config.on_duplicate_id not in POLICIES:
        raise ValueError(f"on_duplicate_id {config.on_duplicate_id!r} is not one of {POLICIES}")
    options = RecordOptions(
        media_root=media_root,
        source=source,
        check_media=config.check_media,
        media_store=storage.join(config.run, "media"),
        columns=tuple(sorted((config.columns or {}).items())),
    )
    num_cpus = int(ray.cluster_resources().get("CPU", 1))
    files = _stage_inputs(config)
    chunk_bytes = config.chunk_bytes or _chunk_bytes([f for f, _, _ in files], num_cpus)
    chunks = plan_chunks(files, chunk_bytes)
    written = set(storage.listdir(pool_dir))
    todo = [c for c in chunks if f"part-{c.index:05d}.parquet" not in written]
    tars = [c for c in todo if c.kind == "webdataset"]
    if tars:
        _ingest_webdataset(tars, options, config.run)
    todo = [c for c in todo if c.kind != "webdataset"]
    if todo:
        items = [{"chunk": json.dumps(asdict(c))} for c in todo]
        ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _ingest_chunks, fn_kwargs={"options": options, "run": config.run}, batch_size=1
        ).materialize()
    return _finish(config.run, chunks, config.on_duplicate_id)


def _finish(run: str, chunks: list[Chunk], on_duplicate_id: str) -> dict:
    """Make ids unique over all shards, sum the per-shard counts from the written files and
    mark the stage complete."""
    names = [f"part-{chunk.index:05d}.parquet" for chunk in chunks]
    pool, quarantine = storage.join(run, "pool"), storage.join(run, "quarantine", "ingest")
    resolve_duplicate_ids(pool, quarantine, names, on_duplicate_id)
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
    parser.add_argument(
        "--input-format", default=None, help="force json, jsonl or parquet (default: by content)"
    )
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="THEIRS=OURS",
        help="map an input field / column to ours, e.g. img=images (repeatable)",
    )
    parser.add_argument(
        "--on-duplicate-id",
        choices=POLICIES,
        default="quarantine",
        help="a repeated id: quarantine later rows (default) or rename them X#dup1, ...",
    )
    args = parser.parse_args(argv)
    columns = dict(c.split("=", 1) for c in args.column) if args.column else None
    config = IngestConfig(
        args.input,
        args.run,
        args.media_root,
        args.source,
        not args.no_check_media,
        input_format=args.input_format,
        columns=columns,
        on_duplicate_id=args.on_duplicate_id,
    )
    print(f"[mmcurate] ingest config: {asdict(config)}")
    started = time.time()
    counts = ingest(config)
    print(stage_line("ingest", counts, started))
    print(f"[mmcurate] quarantined by reason: {counts['reasons']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`mmcurate export --run RUN --subset NAME --format FORMAT --out PATH`: hand a subset to a trainer.

The subset's rows (from `scored/`, else `pool/`) are written in manifest order, as
- `llava`: LLaVA JSON (`.json` out) or JSONL; the exact inverse of the LLaVA reader,
- `swift`: ms-swift / LLaMA-Factory JSONL, plus the subset's entry merged into
  `dataset_info.json` beside the output (LLaMA-Factory's registry of datasets),
- `trl`: TRL content-parts rows, as Parquet (`.parquet` out) or JSONL,
- `parquet`: our row schema with every descriptor column the run computed.
Media: `relative` (default) writes each path relative to `--media-root` (default: the
output's folder; the media are not moved), `copy` copies each media file once, by content
hash, to `OUT_DIR/media/` and writes that relative path, `embed` (Parquet formats) stores
the bytes in the file as HF datasets `struct<bytes, path>`. Re-ingesting the export gives
back the same rows in the same order (the `trl` / `swift` forms with implicit tags made
explicit at the first user turn, the rule every stage applies).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc

from operators import storage
from operators.formats.embedded import media_extension
from operators.formats.exporters import dataset_info_entry, row_to_swift, row_to_trl
from operators.formats.writers import export_llava, write_parquet_atomic

__all__ = ["FORMATS", "MEDIA_MODES", "ExportConfig", "export", "main"]

FORMATS = ("llava", "swift", "trl", "parquet")
MEDIA_MODES = ("relative", "copy", "embed")


@dataclass(frozen=True)
class ExportConfig:
    run: str  # the run directory
    subset: str  # subsets/NAME
    format: str  # one of FORMATS
    out: str  # the output file
    media: str = "relative"  # relative | copy | embed (embed: Parquet outputs only)
    media_root: str | None = None  # relative paths are relative to this; default: out's folder


def subset_rows(run: str, name: str) -> pa.Table:
    """Every column of the subset's rows, in manifest (position) order; a selected id without
    a row is an error (an export must be the whole subset)."""
    from training.data import parquet_dataset, read_subset, rows_dir

    subset, _ = read_subset(run, name)
    ids = subset.column("id").combine_chunks()
    table = parquet_dataset(rows_dir(run)).to_table(filter=pc.field("id").isin(ids))
    order = pc.index_in(ids, table.column("id"))
    if order.null_count:
        raise ValueError(f"{order.null_count} selected id(s) of {name!r} have no row in {run}")
    return table.take(order)


class MediaMapper:
    """Stored media path -> what the export writes, per media mode."""

    def __init__(self, config: ExportConfig):
        self.mode, self.out_dir = config.media, os.path.dirname(os.path.abspath(config.out))
        self.root = config.media_root or self.out_dir

    def __call__(self, path: str):
        if self.mode == "embed":
            return {"bytes": storage.read_bytes(path), "path": os.path.basename(path)}
        if self.mode == "copy":
            data = storage.read_bytes(path)
            digest = hashlib.sha256(data).hexdigest()
            relative = f"media/{digest[:2]}/{digest}{media_extension(data, path)}"
            target = os.path.join(self.out_dir, relative)
            if not os.path.exists(target):
                storage.write_bytes(target, data)
            return relative
        if "://" in path:
            return path
        return os.path.relpath(path, os.path.realpath(self.root))


def _write_jsonl(records, out: str) -> None:
    with storage.open_output(out) as binary, io.TextIOWrapper(binary, "utf-8") as text:
        for record in records:
            text.write(json.dumps(record, ensure_ascii=False) + "\n")


def _records_table(records: list[dict]) -> pa.Table:
    """Records with differing keys (images on some, videos on others) as one table."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    return pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in records])


def _merge_dataset_info(config: ExportConfig, media_types: set[str]) -> str:
    path = os.path.join(os.path.dirname(os.path.abspath(config.out)), "dataset_info.json")
    info = json.loads(storage.read_text(path)) if storage.exists(path) else {}
    info[config.subset] = dataset_info_entry(os.path.basename(config.out), media_types)
    storage.write_text(path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path


def export(config: ExportConfig) -> dict:
    """Write the subset; returns {rows, format, out, media}."""
    if config.format not in FORMATS:
        raise ValueError(f"--format {config.format!r} is not one of {', '.join(FORMATS)}")
    if config.media not in MEDIA_MODES:
        raise ValueError(f"--media {config.media!r} is not one of {', '.join(MEDIA_MODES)}")
    parquet_out = config.format == "parquet" or config.out.endswith(".parquet")
    if config.media == "embed" and not (config.format == "trl" and parquet_out):
        raise ValueError("--media embed is for a TRL Parquet output (--format trl, .parquet)")
    table = subset_rows(config.run, config.subset)
    rows, mapper = table.to_pylist(), MediaMapper(config)
    if config.format == "llava":
        export_llava(rows, config.out, mapper.root, media_path=mapper)
    elif config.format == "swift":
        _write_jsonl((row_to_swift(r, mapper) for r in rows), config.out)
        _merge_dataset_info(config, {r["media_type"] for r in rows})
    elif config.format == "trl" and parquet_out:
        write_parquet_atomic(_records_table([row_to_trl(r, mapper) for r in rows]), config.out)
    elif config.format == "trl":
        _write_jsonl((row_to_trl(r, mapper) for r in rows), config.out)
    else:
        media = pa.array([[mapper(p) for p in r["media"]] for r in rows], pa.list_(pa.string()))
        table = table.set_column(table.schema.get_field_index("media"), "media", media)
        write_parquet_atomic(table, config.out)
    return {"rows": len(rows), "format": config.format, "out": config.out, "media": config.media}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate export", description=__doc__)
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--subset", required=True, help="subset name (RUN/subsets/NAME)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="output file (.json/.jsonl/.parquet)")
    parser.add_argument("--media", default="relative", choices=MEDIA_MODES)
    parser.add_argument("--media-root", default=None, help="relative paths start here")
    args = parser.parse_args(argv)
    config = ExportConfig(args.run, args.subset, args.format, args.out, args.media, args.media_root)
    print(f"[mmcurate] export config: {asdict(config)}")
    started = time.time()
    counts = export(config)
    print(
        f"[mmcurate] export: {counts['rows']} rows -> {counts['out']} "
        f"({time.time() - started:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

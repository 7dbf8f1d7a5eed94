"""Writers: atomic Parquet shards, and LLaVA JSON / JSONL export of rows.

Shards are written under a temporary name and renamed when complete, so a reader never sees
half a shard and a rerun can trust any shard that exists. The LLaVA export inverts the
reader: `messages` back to `conversations`, media back to paths relative to the media root
in the form the input used, and the `extra` fields restored, so a round trip reproduces the
input records.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable

import pyarrow as pa

from operators import storage
from operators.formats.records import RESERVED
from operators.media_paths import relative_media_path

__all__ = ["export_llava", "row_to_llava", "write_parquet_atomic"]

SPEAKER_OF = {"user": "human", "assistant": "gpt", "system": "system"}


def write_parquet_atomic(table: pa.Table, path: str) -> None:
    """Write `table` to `path` (local or URI) via a temporary file and a rename, or as one
    whole object on an object store (`operators/storage.py`)."""
    storage.write_parquet(table, path)


def row_to_llava(row: dict, media_root: str, media_path: Callable | None = None) -> dict:
    """One row of ROW_SCHEMA back to the LLaVA record it was read from (media paths relative
    to `media_root`, or as `media_path` maps them)."""
    extra = json.loads(row.get("extra") or "{}")
    meta = extra.pop(RESERVED, {"given": ["id"], "media_form": "str", "id_type": "str"})
    given = set(meta.get("given", []))
    record: dict = {}
    if "id" in given:
        record["id"] = int(row["id"]) if meta.get("id_type") == "int" else row["id"]
    if row["media_type"] in ("image", "video"):
        to_path = media_path or (lambda p: relative_media_path(p, media_root))
        paths = [to_path(p) for p in row["media"]]
        single = meta.get("media_form") == "str" and len(paths) == 1
        record[row["media_type"]] = paths[0] if single else paths
    record["conversations"] = [
        {"from": SPEAKER_OF[m["role"]], "value": m["content"]} for m in row["messages"]
    ]
    for field in ("source", "category", "answer", "video_id"):
        if field in given:
            record[field] = row[field]
    record.update(extra)
    return record


def export_llava(
    rows: Iterable[dict], out_path: str, media_root: str, media_path: Callable | None = None
) -> int:
    """Write rows as LLaVA JSONL (`.jsonl`) or a JSON list (`.json`). Returns the count."""
    as_list = out_path.endswith(".json")
    count = 0
    with storage.open_output(out_path) as binary, io.TextIOWrapper(binary, "utf-8") as out:
        if as_list:
            out.write("[\n")
        for row in rows:
            text = json.dumps(row_to_llava(row, media_root, media_path), ensure_ascii=False)
            if as_list:
                out.write((",\n" if count else "") + text)
            else:
                out.write(text + "\n")
            count += 1
        if as_list:
            out.write("\n]\n")
    return count

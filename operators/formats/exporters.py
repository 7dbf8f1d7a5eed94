"""Rows back out, in the formats trainers read: ms-swift / LLaMA-Factory and TRL content parts.

LLaVA JSON / JSONL is `writers.export_llava` (the exact inverse of the LLaVA reader). Here:
- `swift`: ms-swift / LLaMA-Factory JSONL, `{"messages": [{"role", "content"}], "images": [..]}`
  (or `videos`), plus the record's own extra fields; `dataset_info_entry` is the entry
  LLaMA-Factory's `data/dataset_info.json` needs (sharegpt formatting, OpenAI-style tags).
- `trl`: TRL-ready rows, each turn's content as parts (`{"type": "image"}`,
  `{"type": "text", "text": ...}`) and the media in `images` / `videos`; JSONL or Parquet (the
  Parquet media optionally embedded as HF datasets `struct<bytes, path>`, which `datasets`
  loads as its Image feature).
Both consumers need one tag per media item, so a row whose media had no tag
(`extra._mmcurate.placeholders == "implicit"`) gets its tags before the first user turn's
text: the rule that ingest recorded and scoring and training apply. `media_path` maps each
stored media path to what the export writes (relative to a root, or a copy).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from operators.formats.records import RESERVED

__all__ = ["dataset_info_entry", "row_to_swift", "row_to_trl", "tagged_messages", "text_parts"]

TAG = {"image": "<image>", "video": "<video>"}
MEDIA_KEY = {"image": "images", "video": "videos"}


def _extra(row: dict) -> tuple[dict, dict]:
    extra = json.loads(row.get("extra") or "{}")
    return extra, extra.pop(RESERVED, {})


def tagged_messages(row: dict, meta: dict) -> list[dict]:
    """The row's turns with one tag per media item (implicit tags placed first in the first
    user turn, LLaVA-style with a newline)."""
    messages = [dict(m) for m in row["messages"]]
    if meta.get("placeholders") == "implicit" and row["media"]:
        first = next(m for m in messages if m["role"] == "user")
        first["content"] = (TAG[row["media_type"]] + "\n") * len(row["media"]) + first["content"]
    return messages


def _record_base(row: dict, meta: dict, extra: dict) -> dict:
    record = {"id": row["id"]} if "id" in meta.get("given", ["id"]) else {}
    for field in ("source", "category", "video_id"):
        if field in meta.get("given", []):
            record[field] = row[field]
    return record | {k: v for k, v in extra.items() if k not in ("messages", "images", "videos")}


def row_to_swift(row: dict, media_path: Callable[[str], str]) -> dict:
    """One row as an ms-swift / LLaMA-Factory record."""
    extra, meta = _extra(row)
    record = {"messages": tagged_messages(row, meta)}
    if row["media_type"] != "text":
        record[MEDIA_KEY[row["media_type"]]] = [media_path(p) for p in row["media"]]
    return {**_record_base(row, meta, extra), **record}


def text_parts(text: str) -> list[dict]:
    """Tagged text as content parts: a media part per tag, the text between as text parts."""
    parts, rest = [], text
    while True:
        cut = min(((rest.find(t), k) for k, t in TAG.items() if rest.find(t) >= 0), default=None)
        if cut is None:
            break
        at, kind = cut
        if at:
            parts.append({"type": "text", "text": rest[:at]})
        parts.append({"type": kind})
        rest = rest[at + len(TAG[kind]) :]
    if rest or not parts:
        parts.append({"type": "text", "text": rest})
    return parts


def row_to_trl(row: dict, media_path: Callable[[str], object]) -> dict:
    """One row as a TRL conversational record with content parts."""
    extra, meta = _extra(row)
    messages = [
        {"role": m["role"], "content": text_parts(m["content"])} for m in tagged_messages(row, meta)
    ]
    record = {"messages": messages}
    if row["media_type"] != "text":
        record[MEDIA_KEY[row["media_type"]]] = [media_path(p) for p in row["media"]]
    return {**_record_base(row, meta, extra), **record}


def dataset_info_entry(file_name: str, media_types: set[str]) -> dict:
    """LLaMA-Factory's dataset_info.json entry for a `swift` export (sharegpt, OpenAI tags)."""
    columns = {"messages": "messages"}
    for kind in sorted(media_types & set(MEDIA_KEY)):
        columns[MEDIA_KEY[kind]] = MEDIA_KEY[kind]
    tags = {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
        "system_tag": "system",
    }
    return {"file_name": file_name, "formatting": "sharegpt", "columns": columns, "tags": tags}

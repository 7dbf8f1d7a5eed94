"""Normalize one input record (LLaVA style, or a row of our schema) into the sample row.

LLaVA records carry `conversations` (`from`: human / gpt / system, `value`) and an optional
`image` or `video` (a path or a list of paths). They map to `messages` (user / assistant /
system), `media`, `media_type`. Fields we do not model are kept verbatim in `extra` (JSON),
with a reserved `_mmcurate` entry recording which modeled fields the input gave and in what
form, so an export reproduces the input exactly. A record that cannot be normalized raises
RowError with a reason code and the offending field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from operators.media import MediaError, probe_media
from operators.media_paths import MediaPathError, resolve_media_path

__all__ = ["RecordOptions", "RowError", "derive_id", "normalize_llava", "normalize_schema_row"]

ROLE_OF = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
MODELED_FIELDS = ("id", "source", "category", "answer", "video_id")
RESERVED = "_mmcurate"


class RowError(ValueError):
    """A row that cannot be normalized: `reason` is a code to count by, `field` where."""

    def __init__(self, reason: str, message: str, field: str | None = None):
        where = f"field {field!r}: " if field else ""
        super().__init__(f"{where}{message}")
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class RecordOptions:
    media_root: str
    source: str = "pool"
    check_media: bool = True


def derive_id(source: str, origin: str, record_text: str) -> str:
    """Stable id for a record without one: SHA1 of source, position and content, 16 hex chars.

    The position is part of the key so two identical lines still get distinct ids.
    """
    digest = hashlib.sha1(f"{source}\n{origin}\n{record_text}".encode()).hexdigest()
    return digest[:16]


def _messages(conversations) -> list[dict]:
    if not isinstance(conversations, list) or not conversations:
        raise RowError("malformed", "must be a non-empty list of turns", "conversations")
    messages = []
    for i, turn in enumerate(conversations):
        if not isinstance(turn, dict):
            raise RowError("malformed", f"turn {i} is not an object", "conversations")
        speaker, value = turn.get("from"), turn.get("value")
        if speaker not in ROLE_OF:
            raise RowError("malformed", f"turn {i} has unknown speaker {speaker!r}", "from")
        if not isinstance(value, str):
            raise RowError("malformed", f"turn {i} value is not a string", "value")
        messages.append({"role": ROLE_OF[speaker], "content": value})
    roles = {m["role"] for m in messages}
    if "user" not in roles or "assistant" not in roles:
        raise RowError("malformed", "needs at least one human and one gpt turn", "conversations")
    return messages


def _media_list(value, field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise RowError("malformed", "must be a path or a non-empty list of paths", field)


def check_media(paths: list[str], media_type: str, options: RecordOptions) -> list[str]:
    """Resolve each path under the media root and, if asked, check that it decodes."""
    resolved = []
    for path in paths:
        try:
            full = resolve_media_path(path, options.media_root)
        except MediaPathError as error:
            raise RowError("path_escape", str(error), media_type) from None
        if options.check_media:
            try:
                probe_media(full, media_type)
            except MediaError as error:
                code = "missing_media" if "not found" in str(error) else "corrupt_media"
                raise RowError(code, str(error), media_type) from None
        resolved.append(full)
    return resolved


def normalize_llava(record, origin: str, record_text: str, options: RecordOptions) -> dict:
    """Map one LLaVA record to a row dict of ROW_SCHEMA (raises RowError)."""
    if not isinstance(record, dict):
        raise RowError("malformed", f"record is a {type(record).__name__}, not an object")
    messages = _messages(record.get("conversations"))
    if "image" in record and "video" in record:
        raise RowError("malformed", "has both 'image' and 'video'", "image")
    media_type = "image" if "image" in record else "video" if "video" in record else "text"
    raw_media = record.get(media_type) if media_type != "text" else None
    media = _media_list(raw_media, media_type) if media_type != "text" else []
    for field in MODELED_FIELDS:
        value = record.get(field)
        if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
            raise RowError("malformed", f"must be a string, got {type(value).__name__}", field)
    source = str(record["source"]) if record.get("source") is not None else options.source
    given_id = record.get("id")
    row_id = str(given_id) if given_id is not None else derive_id(source, origin, record_text)
    answer = record.get("answer")
    if answer is None:
        answer = next(m["content"] for m in reversed(messages) if m["role"] == "assistant")
    known = {"conversations", "image", "video", *MODELED_FIELDS}
    extra = {k: v for k, v in record.items() if k not in known}
    extra[RESERVED] = {
        "given": [f for f in MODELED_FIELDS if record.get(f) is not None],
        "media_form": type(raw_media).__name__ if raw_media is not None else None,
        "id_type": type(given_id).__name__ if given_id is not None else None,
    }
    resolved = check_media(media, media_type, options) if media else []
    video_id = record.get("video_id")
    return {
        "id": row_id,
        "source": source,
        "media_type": media_type,
        "media": resolved,
        "video_id": str(video_id) if video_id is not None else (media[0] if media else None),
        "messages": messages,
        "category": str(record["category"]) if record.get("category") is not None else None,
        "answer": str(answer),
        "extra": json.dumps(extra, ensure_ascii=False),
        "origin": origin,
    }


def normalize_schema_row(row: dict, origin: str, options: RecordOptions) -> dict:
    """Validate a row that already has our schema (Parquet input); resolve and check media."""
    for field in ("id", "source", "media_type", "messages"):
        if row.get(field) is None:
            raise RowError("malformed", "is missing", field)
    if row["media_type"] not in ("image", "video", "text"):
        raise RowError("malformed", f"unknown media type {row['media_type']!r}", "media_type")
    messages = row["messages"]
    if not messages or any(m.get("role") not in ROLE_OF.values() for m in messages):
        raise RowError("malformed", "needs turns with roles system/user/assistant", "messages")
    media = list(row.get("media") or [])
    if row["media_type"] != "text" and not media:
        raise RowError("malformed", "is empty for a media row", "media")
    answer = row.get("answer")
    if answer is None:
        answer = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), None)
    return {
        **row,
        "media": check_media(media, row["media_type"], options) if media else [],
        "video_id": row.get("video_id") or (media[0] if media else None),
        "answer": answer,
        "extra": row.get("extra") or "{}",
        "origin": row.get("origin") or origin,
    }

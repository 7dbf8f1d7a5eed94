"""Normalize one input record (LLaVA style, or a row of our schema) into the sample row.

LLaVA records carry `conversations` (`from`: human / gpt / system, `value`) and an optional
`image` or `video` (a path or a list of paths). They map to `messages` (user / assistant /
system), `media`, `media_type`. Fields we do not model are kept verbatim in `extra` (JSON),
with a reserved `_mmcurate` entry recording which modeled fields the input gave and in what
form, so an export reproduces the input exactly. A record that cannot be normalized raises
RowError with a reason code and the offending field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from operators import storage
from operators.formats.embedded import store_embedded
from operators.media import MediaError, probe_media
from operators.media_paths import MediaPathError, resolve_media_path

__all__ = [
    "Parsed",
    "RecordOptions",
    "RowError",
    "build_row",
    "check_placeholders",
    "derive_id",
    "jsonable",
    "media_field",
    "media_list",
    "normalize_llava",
    "normalize_schema_row",
]

ROLE_OF = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
MODELED_FIELDS = ("id", "source", "category", "answer", "video_id")
RESERVED = "_mmcurate"
TAGS = ("image", "video")
EMBEDDED = "embedded:"  # prefix of a media path in the run's media store (before resolving)


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
    # where embedded media (HF `struct<bytes, path>`, binary columns) are written, once each,
    # by content hash: the run's `media/` folder; None: embedded media are malformed
    media_store: str | None = None
    # (the input's key or column, ours): e.g. ("img", "images"); applied before reading
    columns: tuple[tuple[str, str], ...] = ()


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


def media_list(value, field: str, options: RecordOptions) -> list[str]:
    """A path, embedded media (HF `struct<bytes, path>` or bytes) or a non-empty list of them."""
    items = value if isinstance(value, list) else [value]
    if not items or value is None:
        raise RowError("malformed", "must be a path or a non-empty list of paths", field)
    paths = []
    for item in items:
        if isinstance(item, str):
            paths.append(item)
        elif isinstance(item, (bytes, dict)):
            paths.append(store_embedded(item, field, options))
        else:
            raise RowError("malformed", "must be a path or a non-empty list of paths", field)
    return paths


def check_media(paths: list[str], media_type: str, options: RecordOptions) -> list[str]:
    """Resolve each path under the media root and, if asked, check that it decodes.

    Embedded media written to the run's media store are ours and resolve there."""
    resolved = []
    for path in paths:
        try:
            if options.media_store and path.startswith(EMBEDDED):
                full = storage.join(options.media_store, path[len(EMBEDDED) :])
            else:
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


def check_placeholders(messages: list[dict], media_type: str, count: int) -> str | None:
    """Validate the `<image>` / `<video>` tags against the media; returns the rule applied.

    Tags of the row's media type must number 0 or exactly the media count, and no tag of the
    other type may appear (reason `placeholder_mismatch`). With media and no tag at all, the
    media stand before the first user turn, as scoring (`vlm_inputs`), vLLM generation and
    training place them; the row records `"placeholders": "implicit"` in extra and an export
    writes the record back without tags."""
    tags = {kind: sum(m["content"].count(f"<{kind}>") for m in messages) for kind in TAGS}
    other = sum(n for kind, n in tags.items() if kind != media_type)
    own = tags.get(media_type, 0)
    if other or (own and own != count):
        raise RowError(
            "placeholder_mismatch",
            f"{tags['image']} <image> and {tags['video']} <video> tags for {count} "
            f"{media_type} media",
            "messages",
        )
    return "implicit" if count and not own else None


@dataclass(frozen=True)
class Parsed:
    """What a format's reader took from a record."""

    messages: list[dict]
    media_type: str
    raw_media: object  # the record's media value as given (None for text)
    known: tuple[str, ...]  # the record keys consumed (the rest go to extra)
    meta: dict = dataclasses.field(default_factory=dict)  # format facts for an exact export


def build_row(record: dict, parsed: Parsed, origin: str, record_text: str, options) -> dict:
    """The row of ROW_SCHEMA from a record and what its format's reader parsed."""
    messages, media_type, raw_media = parsed.messages, parsed.media_type, parsed.raw_media
    media = media_list(raw_media, media_type, options) if media_type != "text" else []
    for field in MODELED_FIELDS:
        value = record.get(field)
        if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
            raise RowError("malformed", f"must be a string, got {type(value).__name__}", field)
    rule = check_placeholders(messages, media_type, len(media))
    source = str(record["source"]) if record.get("source") is not None else options.source
    given_id = record.get("id")
    row_id = str(given_id) if given_id is not None else derive_id(source, origin, record_text)
    answer = record.get("answer")
    if answer is None:
        answer = next(m["content"] for m in reversed(messages) if m["role"] == "assistant")
    known = {*parsed.known, *MODELED_FIELDS}
    extra = {k: v for k, v in record.items() if k not in known}
    extra[RESERVED] = {
        "given": [f for f in MODELED_FIELDS if record.get(f) is not None],
        "media_form": type(raw_media).__name__ if raw_media is not None else None,
        "id_type": type(given_id).__name__ if given_id is not None else None,
        **({"placeholders": rule} if rule else {}),
        **parsed.meta,
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
        "extra": json.dumps(extra, ensure_ascii=False, default=jsonable),
        "origin": origin,
    }


def jsonable(value):
    """JSON for what json cannot write: bytes as their hash and length, anything else as text."""
    if isinstance(value, bytes):
        return {"sha256": hashlib.sha256(value).hexdigest(), "bytes": len(value)}
    return str(value)


def media_field(record: dict, names: tuple[str, str]) -> tuple[str, object]:
    """(media_type, raw value) of a record's image or video field; both at once is malformed."""
    image, video = (record.get(n) if record.get(n) != [] else None for n in names)
    if image is not None and video is not None:
        raise RowError("malformed", f"has both {names[0]!r} and {names[1]!r}", names[0])
    if image is not None:
        return "image", image
    return ("video", video) if video is not None else ("text", None)


def normalize_llava(record, origin: str, record_text: str, options: RecordOptions) -> dict:
    """Map one LLaVA record to a row dict of ROW_SCHEMA (raises RowError)."""
    if not isinstance(record, dict):
        raise RowError("malformed", f"record is a {type(record).__name__}, not an object")
    messages = _messages(record.get("conversations"))
    media_type, raw_media = media_field(record, ("image", "video"))
    parsed = Parsed(messages, media_type, raw_media, ("conversations", "image", "video"))
    return build_row(record, parsed, origin, record_text, options)


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
    extra = row.get("extra") or "{}"
    if check_placeholders(messages, row["media_type"], len(media)):
        meta = json.loads(extra)
        meta.setdefault(RESERVED, {})["placeholders"] = "implicit"
        extra = json.dumps(meta, ensure_ascii=False)
    answer = row.get("answer")
    if answer is None:
        answer = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), None)
    return {
        **row,
        "media": check_media(media, row["media_type"], options) if media else [],
        "video_id": row.get("video_id") or (media[0] if media else None),
        "answer": answer,
        "extra": extra,
        "origin": row.get("origin") or origin,
    }

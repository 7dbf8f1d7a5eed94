"""WebDataset tar shards: a sample is the files sharing a key (`0001.json`, `0001.jpg`, ...).

Ray Data's `read_webdataset` reads the tars (with `decoder=None`: raw bytes, so nothing in a
shard is ever unpickled) and groups files by key. Each sample becomes one record here:
its `json` part is the record (LLaVA `conversations` or `messages`, any form the JSON readers
take) and its media parts are the record's media, in the order of their suffixes (`jpg`,
`0.jpg`, `1.jpg`, ... sorted), written once to the run's media store by content hash like
any embedded media. A sample whose record or media cannot be read becomes that sample's
quarantine entry, never the shard's. Rows keep the tar's key order; the origin is
`TAR:KEY`.
"""

from __future__ import annotations

import json

from operators.formats.embedded import store_embedded
from operators.formats.records import RecordOptions, RowError

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "sample_record"]

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp", "gif")
VIDEO_SUFFIXES = ("mp4", "webm", "avi", "mov", "mkv")


def _kind(suffix: str) -> str | None:
    ext = suffix.rsplit(".", 1)[-1].lower()
    return "image" if ext in IMAGE_SUFFIXES else "video" if ext in VIDEO_SUFFIXES else None


def sample_record(sample: dict, options: RecordOptions) -> tuple[dict, str]:
    """(record with its media as run-store paths, the record's JSON text) of one sample."""
    # a block holds every suffix seen in it: a sample lacks the others (None / empty)
    parts = {k: v for k, v in sample.items() if not k.startswith("__") and isinstance(v, bytes)}
    parts = {k: v for k, v in parts.items() if v}
    text = parts.pop("json", None)
    if not isinstance(text, bytes):
        raise RowError("malformed", "sample has no json part", "json")
    try:
        record = json.loads(text.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RowError("malformed", f"json part is not JSON: {error}", "json") from None
    if not isinstance(record, dict):
        raise RowError("malformed", "json part is not an object", "json")
    media = sorted((s, _kind(s), data) for s, data in parts.items() if _kind(s))
    kinds = {kind for _, kind, _ in media}
    if len(kinds) > 1:
        raise RowError("malformed", "sample has both image and video files", "json")
    if media:
        kind = kinds.pop()
        key = sample.get("__key__", "sample")
        paths = [
            store_embedded({"bytes": d, "path": f"{key}.{s}"}, kind, options) for s, _, d in media
        ]
        field = kind if "conversations" in record else f"{kind}s"
        if record.get(field) is not None:
            raise RowError("malformed", f"media both in the json ({field}) and as files", field)
        record[field] = paths
    return record, text.decode("utf-8-sig", errors="replace")

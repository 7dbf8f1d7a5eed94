"""Embedded media (HF datasets `struct<bytes, path>`, binary columns) written once to the run.

Hub datasets in the HF layout carry images and videos as bytes inside the Parquet file. Every
later stage (media facts, perceptual hashes, the proxy, training) opens media by path, so the
bytes are written once, at ingest, to the run's content-addressed media store
`RUN/media/<sha256[:2]>/<sha256><ext>` and the row holds that path; no stage copies them
again, and identical media (the same image in many rows) are stored once. Decoding from the
bytes in every stage instead would carry the bytes through every shard of every stage.
A struct with null bytes and a path is an ordinary path to resolve under the media root.
"""

from __future__ import annotations

import hashlib
import os

from operators import storage

__all__ = ["media_extension", "store_embedded"]

SIGNATURES = (
    (b"\xff\xd8\xff", ".jpg"),
    (b"\x89PNG", ".png"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
    (b"\x1aE\xdf\xa3", ".webm"),
)


def media_extension(data: bytes, name: str | None) -> str:
    """The file extension for embedded bytes: the given name's, else from the magic bytes."""
    ext = os.path.splitext(name or "")[1].lower()
    if ext and len(ext) <= 6 and ext[1:].isalnum():
        return ext
    if data[4:8] == b"ftyp":
        return ".mp4"
    if data[:4] == b"RIFF":
        return ".webp" if data[8:12] == b"WEBP" else ".avi"
    return next((e for magic, e in SIGNATURES if data.startswith(magic)), ".bin")


def store_embedded(item, field: str, options) -> str:
    """Write embedded media once (by SHA-256) and return its `embedded:` path; a struct with
    null bytes returns its `path` for the ordinary root-checked resolution."""
    from operators.formats.records import EMBEDDED, RowError

    data, name = (item, None) if isinstance(item, bytes) else (item.get("bytes"), item.get("path"))
    if data is None:
        if isinstance(name, str):
            return name
        raise RowError("malformed", "embedded media has neither bytes nor a path", field)
    if not isinstance(data, bytes) or not data:
        raise RowError("malformed", "embedded media bytes are empty or not bytes", field)
    if options.media_store is None:
        raise RowError("malformed", "embedded media need a run media store", field)
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{digest[:2]}/{digest}{media_extension(data, name)}"
    target = storage.join(options.media_store, relative)
    if not storage.exists(target):
        storage.write_bytes(target, data)
    return EMBEDDED + relative

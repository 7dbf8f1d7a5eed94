"""Which reader takes an input file: detection by content, and transparent decompression.

A file's format is read from its first bytes, never from its name alone: Parquet's `PAR1`
magic, a tar header (`ustar` at byte 257: WebDataset shards), or the first non-blank
character of the (decompressed, BOM-stripped) text: `[` a JSON list, `{` JSON lines. gzip and
zstd are recognised by their magic numbers, so `pool.jsonl.gz`, `pool.json.zst` and a `.jsonl`
that happens to be compressed all read the same way; decompression streams (pyarrow's
codecs, no extra dependency). `input_format` in the recipe forces a format; a file that no
reader accepts raises FormatError naming the file and the formats tried.
"""

from __future__ import annotations

import pyarrow as pa

from operators import storage

__all__ = [
    "BOM",
    "FORMATS",
    "FormatError",
    "compression_of",
    "detect_format",
    "open_decompressed",
]

FORMATS = ("json", "jsonl", "parquet", "webdataset")
BOM = b"\xef\xbb\xbf"
MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}
PEEK = 4096


class FormatError(ValueError):
    """An input file that no reader accepts (or not the forced one)."""


def compression_of(path: str) -> str | None:
    """'gzip', 'zstd' or None, from the file's magic number."""
    head = storage.read_bytes(path, 0, min(4, storage.size(path)))
    return next((codec for magic, codec in MAGIC.items() if head.startswith(magic)), None)


def open_decompressed(path: str):
    """A binary stream of the file's bytes, decompressed if it is gzip or zstd."""
    codec = compression_of(path)
    raw = storage.open_input(path)
    return pa.CompressedInputStream(raw, codec) if codec else raw


def _text_kind(head: bytes) -> str | None:
    text = head.removeprefix(BOM).lstrip(b" \t\r\n")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "jsonl"
    return None


def detect_format(path: str, forced: str | None = None) -> str:
    """The format of one input file (one of FORMATS); `forced` must be one of FORMATS."""
    if forced is not None and forced not in FORMATS:
        raise FormatError(f"input_format {forced!r} is not one of {', '.join(FORMATS)}")
    size = storage.size(path)
    head = storage.read_bytes(path, 0, min(PEEK, size))
    if head.startswith(b"PAR1"):
        found = "parquet"
    elif head[257:262] == b"ustar":
        found = "webdataset"
    elif compression_of(path):
        with open_decompressed(path) as stream:
            found = _text_kind(stream.read(PEEK))
    else:
        found = _text_kind(head)
    if forced is not None and found not in (forced, None):
        raise FormatError(f"{path}: input_format is {forced!r} but the file reads as {found!r}")
    if forced is None and found is None:
        raise FormatError(
            f"{path}: no reader accepts this file (tried {', '.join(FORMATS)}): it is not "
            "Parquet, a tar of WebDataset samples, a JSON list or JSON lines (gzip / zstd / "
            "UTF-8 BOM accepted)"
        )
    return forced or found

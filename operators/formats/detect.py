"""Which reader takes an input file: detection by content, and transparent decompression.

A file's format is read from its first bytes, never from its name alone: Parquet's `PAR1`
magic, a tar header (`ustar` at byte 257: WebDataset shards), or the first non-blank
character of the (decompressed, BOM-stripped) text: `[` a JSON list (unless that first line
is a whole JSON value with more lines after it), `{` JSON lines. A text
file whose first line is neither (a garbled or blank first record) and whose name says JSON
lines (`.jsonl` / `.ndjson`, compressed or not) is read as JSON lines, so that one bad line
is quarantined instead of failing the file. gzip and
zstd are recognised by their magic numbers, so `pool.jsonl.gz`, `pool.json.zst` and a `.jsonl`
that happens to be compressed all read the same way; decompression streams (pyarrow's
codecs, no extra dependency). `input_format` in the recipe forces a format (between JSON
and JSON lines it overrides the content; Parquet or a tar read as text, or the reverse, is
an error); a file that no
reader accepts raises FormatError naming the file and the formats tried.
"""

from __future__ import annotations

import json
import tarfile

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
LINE_SUFFIXES = (".jsonl", ".ndjson")
COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd")


class FormatError(ValueError):
    """An input file that no reader accepts (or not the forced one)."""


def compression_of(path: str) -> str | None:
    """'gzip', 'zstd' or None: the file's magic number, when its first bytes also decompress
    (a text file whose first line happens to start with those bytes is not compressed)."""
    head = storage.read_bytes(path, 0, min(4, storage.size(path)))
    codec = next((codec for magic, codec in MAGIC.items() if head.startswith(magic)), None)
    if codec is None:
        return None
    try:
        with pa.CompressedInputStream(storage.open_input(path), codec) as stream:
            stream.read(PEEK)
    except (OSError, pa.ArrowException):
        return None
    return codec


def open_decompressed(path: str):
    """A binary stream of the file's bytes, decompressed if it is gzip or zstd."""
    codec = compression_of(path)
    raw = storage.open_input(path)
    return pa.CompressedInputStream(raw, codec) if codec else raw


def _first_line_is_a_record(text: bytes) -> bool:
    """True when the first line is a whole JSON value and more lines follow: JSON lines whose
    first record happens to be a list, not a JSON list document."""
    first, newline, rest = text.partition(b"\n")
    if not newline or not rest.strip():
        return False
    try:
        json.loads(first)
    except ValueError:
        return False
    return True


def _text_kind(head: bytes) -> str | None:
    text = head.removeprefix(BOM).lstrip(b" \t\r\n")
    if text.startswith(b"["):
        return "jsonl" if _first_line_is_a_record(text) else "json"
    if text.startswith(b"{"):
        return "jsonl"
    return None


def _is_parquet(path: str, head: bytes, size: int) -> bool:
    """Parquet's magic at both ends (a text line that starts with `PAR1` is text)."""
    if size < 12 or not head.startswith(b"PAR1"):
        return False
    return storage.read_bytes(path, size - 4, size) == b"PAR1"


def _is_tar(head: bytes) -> bool:
    """A ustar header whose checksum holds (not text that has `ustar` at byte 257)."""
    if len(head) < 512 or head[257:262] != b"ustar":
        return False
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _named_json_lines(path: str) -> bool:
    name = path.lower()
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.endswith(LINE_SUFFIXES)


def detect_format(path: str, forced: str | None = None) -> str:
    """The format of one input file (one of FORMATS); `forced` must be one of FORMATS."""
    if forced is not None and forced not in FORMATS:
        raise FormatError(f"input_format {forced!r} is not one of {', '.join(FORMATS)}")
    size = storage.size(path)
    head = storage.read_bytes(path, 0, min(PEEK, size))
    if _is_parquet(path, head, size):
        found = "parquet"
    elif _is_tar(head):
        found = "webdataset"
    elif compression_of(path):
        with open_decompressed(path) as stream:
            found = _text_kind(stream.read(PEEK))
    else:
        found = _text_kind(head)
    if found is None and _named_json_lines(path):
        found = "jsonl"
    text_kinds = {"json", "jsonl"}
    if forced is not None and found not in (forced, None) and not {forced, found} <= text_kinds:
        raise FormatError(f"{path}: input_format is {forced!r} but the file reads as {found!r}")
    if forced is None and found is None:
        raise FormatError(
            f"{path}: no reader accepts this file (tried {', '.join(FORMATS)}): it is not "
            "Parquet, a tar of WebDataset samples, a JSON list or JSON lines (gzip / zstd / "
            "UTF-8 BOM accepted)"
        )
    return forced or found

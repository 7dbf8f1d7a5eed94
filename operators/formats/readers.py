"""Readers: LLaVA JSON (a list), JSONL and Parquet pools into sample rows plus quarantine.

An input is cut into chunks (byte ranges of a JSONL file at line boundaries, or Parquet row
groups) so that the work streams: each chunk is parsed on its own, in-process or as one Ray
Data task, and yields (rows, quarantined). Line numbers are exact and 0-based, so an error
names the file and line. A LLaVA JSON list is first re-written as JSONL (one element per line)
by a streaming decoder, never loaded whole. Inputs are local paths or object-store URIs
(`operators/storage.py`): a chunk is one ranged read of its bytes or its Parquet row groups.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from operators import storage
from operators.formats.detect import BOM, open_decompressed
from operators.formats.messages import normalize_messages
from operators.formats.records import (
    RecordOptions,
    RowError,
    jsonable,
    normalize_llava,
    normalize_schema_row,
)
from operators.row_errors import describe, is_row_error, row_by_row, safe_text, with_rows_read
from operators.schema import quarantine_table, rows_table

__all__ = [
    "Chunk",
    "decompress_to",
    "input_files",
    "iter_chunk_tables",
    "json_array_to_jsonl",
    "normalize_record",
    "plan_chunks",
    "quarantine_entry",
    "read_chunk",
]

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
DEFAULT_PARQUET_ROWS = 50_000
SCAN_BLOCK = 1 << 20  # bytes per read while cutting a JSONL file into chunks


@dataclass(frozen=True)
class Chunk:
    """One independently readable piece of an input file."""

    path: str
    kind: str  # "jsonl" or "parquet"
    index: int  # global chunk number: names the output shard
    start: int  # byte offset (jsonl) or first row (parquet)
    end: int  # byte offset (jsonl) or end row (parquet), exclusive
    first_line: int  # 0-based line (jsonl) or row (parquet) of the chunk's first record
    name: str = ""  # the user's input file when `path` is a staged (decompressed) copy of it


def input_files(path: str) -> list[str]:
    """The data files of an input: the file itself, or the sorted files of a directory."""
    if storage.isdir(path):
        suffixes = tuple(f"{s}{c}" for s in (".jsonl", ".json") for c in ("", ".gz", ".zst"))
        suffixes += (".parquet", ".tar")
        return [storage.join(path, n) for n in storage.listdir(path) if n.endswith(suffixes)]
    return [path]


def _jsonl_chunks(path: str, chunk_bytes: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, first_line) byte ranges ending on newlines: a chunk ends after the first
    newline at or past `start + chunk_bytes`. One sequential, block-wise scan (works on any
    stream, an object store's included)."""
    size = storage.size(path)
    start, line = 0, 0
    with storage.open_input(path) as handle:
        buffer = b""  # the file's bytes from `start` on, as far as read
        while start < size:
            cut = min(start + chunk_bytes, size) - start
            while (found := buffer.find(b"\n", cut)) < 0:
                more = handle.read(SCAN_BLOCK)
                if not more:
                    break
                buffer += more
            length = found + 1 if found >= 0 else len(buffer)
            yield start, start + length, line
            start, line = start + length, line + buffer.count(b"\n", 0, length)
            buffer = buffer[length:]


def plan_chunks(
    path: str | list, chunk_bytes: int = DEFAULT_CHUNK_BYTES, forced: str | None = None
) -> list[Chunk]:
    """Cut every data file of `path` (or a list of files, or of (file, format, name)) into
    chunks, numbered globally. The format is detected by content (`detect_format`) unless
    given; a JSON list or a compressed file must be staged as plain JSONL first."""
    from operators.formats.detect import compression_of, detect_format

    chunks: list[Chunk] = []
    for item in input_files(path) if isinstance(path, str) else path:
        file, kind, name = item if isinstance(item, tuple) else (item, None, "")
        kind = kind or detect_format(file, forced)
        if kind == "parquet":
            rows = storage.parquet_file(file).metadata.num_rows
            for start in range(0, rows, DEFAULT_PARQUET_ROWS):
                end = min(start + DEFAULT_PARQUET_ROWS, rows)
                chunks.append(Chunk(file, "parquet", len(chunks), start, end, start, name))
        elif kind == "webdataset":  # one chunk per tar, read by Ray Data (ray_jobs/ingest.py)
            chunks.append(Chunk(file, "webdataset", len(chunks), 0, 0, 0, name))
        elif kind == "jsonl" and not compression_of(file):
            for start, end, line in _jsonl_chunks(file, chunk_bytes):
                chunks.append(Chunk(file, "jsonl", len(chunks), start, end, line, name))
        else:
            raise ValueError(f"{file}: a {kind} input must be staged as JSONL first (stage_text)")
    return chunks


def normalize_record(record, origin: str, record_text: str, options: RecordOptions) -> dict:
    """One parsed record (a JSON object, a Parquet row) to a row dict, by its content:
    `conversations` is LLaVA, `messages` ms-swift / LLaMA-Factory / OpenAI content parts.
    Recipe column mappings apply first. Raises RowError: the record's quarantine entry."""
    if isinstance(record, dict) and options.columns:
        renames = dict(options.columns)
        record = {renames.get(k, k): v for k, v in record.items()}
    if isinstance(record, dict) and "messages" in record and "conversations" not in record:
        return normalize_messages(record, origin, record_text, options)
    if isinstance(record, dict) and "conversations" not in record:
        raise RowError("malformed", "has neither 'conversations' nor 'messages'", "conversations")
    return normalize_llava(record, origin, record_text, options)


def _is_our_schema(schema: pa.Schema) -> bool:
    return {"id", "source", "media_type", "messages", "extra"} <= set(schema.names)


def quarantine_entry(origin: str, reason: str, error: str, raw: str, row_id=None) -> dict:
    """One ingest quarantine row (QUARANTINE_SCHEMA) for the record at `origin`."""
    return {
        "id": safe_text(row_id),
        "origin": safe_text(origin),
        "error_stage": "ingest",
        "reason": reason,
        "error": safe_text(error),
        "raw": safe_text(raw),
    }


def _given_id(record) -> str | None:
    row_id = record.get("id") if isinstance(record, dict) else None
    return str(row_id) if isinstance(row_id, (str, int)) and not isinstance(row_id, bool) else None


def _read_jsonl_line(raw_line: bytes, origin: str, options: RecordOptions):
    """One JSONL line -> (row, None) or (None, quarantine entry); never raises a row error."""
    if not raw_line.strip():
        return None, quarantine_entry(
            origin, "blank_line", "line is blank", raw_line.decode("latin-1")
        )
    try:
        text = raw_line.decode("utf-8")
    except UnicodeDecodeError as error:
        raw = raw_line.decode("utf-8", errors="backslashreplace")
        return None, quarantine_entry(origin, "malformed", f"line is not UTF-8: {error}", raw)
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return None, quarantine_entry(origin, "malformed", f"invalid JSON: {error}", text)
    except RecursionError:
        return None, quarantine_entry(origin, "malformed", "JSON nested too deep to parse", text)
    try:
        return normalize_record(record, origin, text, options), None
    except RowError as error:
        return None, quarantine_entry(origin, error.reason, str(error), text, _given_id(record))
    except Exception as error:
        if not is_row_error(error):
            raise
        return None, quarantine_entry(
            origin, "row_exception", describe(error), text, _given_id(record)
        )


def _jsonl_lines(data: bytes) -> list[bytes]:
    """The lines of a chunk's bytes: every newline ends one; a last line may lack it."""
    lines = data.split(b"\n")
    return lines[:-1] if lines[-1] == b"" else lines


def _read_jsonl_chunk(chunk: Chunk, options: RecordOptions) -> tuple[list[dict], list[dict], int]:
    rows, bad = [], []
    lines = _jsonl_lines(storage.read_bytes(chunk.path, chunk.start, chunk.end))
    for offset, raw_line in enumerate(lines):
        line = chunk.first_line + offset
        origin = f"{chunk.name or chunk.path}:{line}"
        if line == 0:
            raw_line = raw_line.removeprefix(BOM)
        row, entry = _read_jsonl_line(raw_line, origin, options)
        (rows if row is not None else bad).append(row if row is not None else entry)
    return rows, bad, len(lines)


def _read_parquet_chunk(chunk: Chunk, options: RecordOptions) -> tuple[list[dict], list[dict], int]:
    table = _parquet_rows(chunk.path, chunk.start, chunk.end)
    ours = _is_our_schema(table.schema)
    rows, bad = [], []
    for offset, row in enumerate(table.to_pylist()):
        origin = f"{chunk.name or chunk.path}:{chunk.first_line + offset}"
        raw = _raw_json(row)
        try:
            if ours:
                rows.append(normalize_schema_row(row, origin, options))
            else:  # the HF datasets layout: records with media as struct<bytes, path>
                rows.append(normalize_record(row, origin, raw, options))
        except Exception as error:
            if not is_row_error(error):
                raise
            reason = error.reason if isinstance(error, RowError) else "row_exception"
            message = str(error) if isinstance(error, RowError) else describe(error)
            bad.append(quarantine_entry(origin, reason, message, raw, _given_id(row)))
    return rows, bad, table.num_rows


def _raw_json(row: dict) -> str:
    """A Parquet row as the JSON its quarantine entry keeps (bytes as base64, else repr)."""
    try:
        return json.dumps(row, default=jsonable, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return safe_text(repr(row))


def _parquet_rows(path: str, start: int, end: int) -> pa.Table:
    """Rows [start, end) of a Parquet file, reading only the row groups that hold them."""
    meta = storage.parquet_file(path)
    groups, first, offset = [], None, 0
    for k in range(meta.metadata.num_row_groups):
        count = meta.metadata.row_group(k).num_rows
        if offset < end and offset + count > start:
            groups.append(k)
            first = offset if first is None else first
        offset += count
    if not groups:
        return meta.schema_arrow.empty_table()
    return meta.read_row_groups(groups).slice(start - first, end - start)


def read_chunk(chunk: Chunk, options: RecordOptions) -> tuple[pa.Table, pa.Table]:
    """Parse one chunk into (rows with ROW_SCHEMA, quarantine with QUARANTINE_SCHEMA).

    A row that Arrow cannot store is quarantined too (the table is retried row by row); the
    quarantine table's metadata records the rows read from the source (`rows_read`)."""
    if chunk.kind == "webdataset":
        raise ValueError(f"{chunk.path}: WebDataset tars are read through Ray Data (ingest)")
    reader = _read_parquet_chunk if chunk.kind == "parquet" else _read_jsonl_chunk
    rows, bad, read = reader(chunk, options)
    built, failures = row_by_row(rows, rows_table)
    for index, error in failures:
        row = rows[index]
        raw = json.dumps(row, default=str, ensure_ascii=True)
        entry = quarantine_entry(
            row.get("origin"), "unstorable", describe(error), raw, row.get("id")
        )
        bad.append(entry)
    table = pa.concat_tables([t for _, t in built]) if built else rows_table([])
    return table, with_rows_read(quarantine_table(bad), read)


def iter_chunk_tables(path: str, options: RecordOptions) -> Iterator[tuple[pa.Table, pa.Table]]:
    """In-process reader: (rows, quarantined) per chunk of a JSONL / Parquet input."""
    for chunk in plan_chunks(path):
        yield read_chunk(chunk, options)


def _iter_json_array(path: str, block: int = 1 << 20) -> Iterator[tuple[str | None, str]]:
    """Stream the elements of a top-level JSON array as (element JSON, "") or (None, error)."""
    decoder = json.JSONDecoder()
    with io.TextIOWrapper(open_decompressed(path), encoding="utf-8-sig") as handle:
        buffer, pos, eof, started = "", 0, False, False
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(buffer) and not eof:
                try:
                    more = handle.read(block)
                except UnicodeDecodeError as error:
                    yield None, f"file is not UTF-8: {error}"
                    return
                buffer, pos, eof = buffer[pos:] + more, 0, not more
                continue
            if not started:
                if not buffer.startswith("["):
                    yield None, "file does not start with a JSON array"
                    return
                started, pos = True, 1
                continue
            if pos >= len(buffer) or buffer[pos] == "]":
                return
            try:
                value, end = decoder.raw_decode(buffer, pos)
            except json.JSONDecodeError as error:
                if eof:
                    yield None, f"JSON array broken: {error}; the rest is unreadable"
                    return
                more = handle.read(block)
                buffer, pos, eof = buffer[pos:] + more, 0, not more
                continue
            yield json.dumps(value, ensure_ascii=False), ""
            pos = end


def decompress_to(path: str, out_path: str) -> None:
    """Write the decompressed bytes of a gzip / zstd JSONL file to `out_path` (streaming)."""
    with open_decompressed(path) as source, storage.open_output(out_path) as out:
        while block := source.read(SCAN_BLOCK):
            out.write(block)


def json_array_to_jsonl(path: str, out_path: str) -> int:
    """Rewrite a LLaVA JSON list as JSONL, one element per line (streaming). Returns lines.

    An unreadable tail becomes one line holding the error text, which then fails to parse
    and is quarantined with its line number.
    """
    lines = 0
    with storage.open_output(out_path) as binary, io.TextIOWrapper(binary, "utf-8") as out:
        for text, error in _iter_json_array(path):
            out.write((text if text is not None else f"<unreadable: {error}>") + "\n")
            lines += 1
    return lines

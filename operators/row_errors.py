"""Per-row failure isolation: one row's exception becomes that row's quarantine entry.

Every per-row operation (parsing, normalisation, media probing and decoding, a score step, an
encoding) runs so that whatever one row raises is caught, described (exception class and
message) and quarantined, and the rest go on. A batch call that raises is retried row by row
(`row_by_row`), so only the rows that fail on their own are quarantined. Errors of the job itself
are not caught: an out-of-memory worker (MemoryError) and the BaseExceptions that are not
Exceptions (KeyboardInterrupt, SystemExit); a full disk or unreachable storage raises outside
the per-row code (reading a chunk, writing a shard) and stops the stage with its path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

__all__ = [
    "ROWS_READ",
    "describe",
    "is_row_error",
    "row_by_row",
    "rows_read",
    "safe_text",
    "with_rows_read",
]

JOB_ERRORS = (MemoryError,)
MAX_MESSAGE = 2000  # characters of an exception message kept in the quarantine
ROWS_READ = b"mmcurate.rows_read"  # Parquet schema metadata: rows a shard read from its source


def is_row_error(error: BaseException) -> bool:
    """True when `error` belongs to the row being processed, not to the job."""
    return isinstance(error, Exception) and not isinstance(error, JOB_ERRORS)


def safe_text(text: str | None) -> str | None:
    """`text` as valid UTF-8 (lone surrogates escaped), so Arrow can always store it."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe(error: BaseException) -> str:
    """'ExceptionClass: message', bounded and storable."""
    message = str(error)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    return safe_text(f"{type(error).__name__}: {message}")


def row_by_row(
    items: Sequence[Any], call: Callable[[Sequence[Any]], Any]
) -> tuple[list[tuple[int, Any]], list[tuple[int, Exception]]]:
    """`call(items)` once; if it raises a row error, `call([item])` for each item alone.

    Returns ([(index, result)], [(index, error)]): the whole batch's result as index -1 when
    the batch call succeeded, else one result per item that succeeded alone and the error of
    each item that failed alone. Job errors propagate.
    """
    try:
        return [(-1, call(items))], []
    except Exception as error:
        if not is_row_error(error) or not items:
            raise
        if len(items) == 1:
            return [], [(0, error)]
    results, failures = [], []
    for index, item in enumerate(items):
        try:
            results.append((index, call([item])))
        except Exception as error:
            if not is_row_error(error):
                raise
            failures.append((index, error))
    return results, failures


def with_rows_read(table: pa.Table, count: int) -> pa.Table:
    """`table` with the number of source rows its shard read recorded in its metadata."""
    metadata = dict(table.schema.metadata or {})
    metadata[ROWS_READ] = str(int(count)).encode()
    return table.replace_schema_metadata(metadata)


def rows_read(schema: pa.Schema) -> int | None:
    """The rows-read count recorded by `with_rows_read`, or None when absent."""
    value = (schema.metadata or {}).get(ROWS_READ)
    return int(value) if value is not None else None

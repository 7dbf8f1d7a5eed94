"""The sample row: one Arrow schema that every reader produces and every stage extends.

A row is one LLaVA-style conversation (ARCHITECTURE.md section 2). Stages add descriptor
columns and never drop these. Rows that fail validation go to a quarantine table with the
stage, the reason and the raw input, so `input = kept + quarantined` holds at every stage.
"""

from __future__ import annotations

import re

import pyarrow as pa

__all__ = [
    "CAPABILITIES",
    "STYLES",
    "capability_column",
    "MEDIA_TYPES",
    "MESSAGE_TYPE",
    "QUARANTINE_SCHEMA",
    "ROLES",
    "ROW_SCHEMA",
    "empty_quarantine",
    "empty_rows",
    "quarantine_table",
    "rows_table",
]

MEDIA_TYPES = ("image", "video", "text")
ROLES = ("system", "user", "assistant")

# mmSSR's 14 capabilities (columns cap_<snake_case name>, 0-5) and 9 interaction styles
# (column `styles`, a list of these names): part of the contract between scorers and selection.
CAPABILITIES = (
    "object spatial understanding",
    "attribute identification",
    "logical deduction",
    "scene understanding",
    "fine-grained recognition",
    "language generation",
    "in-context learning",
    "comparative analysis",
    "activity recognition",
    "causal reasoning",
    "humanities",
    "stem knowledge",
    "data understanding",
    "OCR",
)
STYLES = (
    "multi-choice",
    "coordinate",
    "yes/no",
    "word/short phrase",
    "short description",
    "detailed description",
    "comparison",
    "chain-of-thought",
    "specified style",
)


def capability_column(name: str) -> str:
    """'object spatial understanding' -> 'cap_object_spatial_understanding'."""
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return "cap_" + key.removeprefix("cap_")


MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])

ROW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("media", pa.list_(pa.string()), nullable=False),
        pa.field("video_id", pa.string()),
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("category", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("extra", pa.string(), nullable=False),
        # Where the row came from: "path:line" (0-based line) or "path:row".
        pa.field("origin", pa.string()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("origin", pa.string()),
        pa.field("error_stage", pa.string(), nullable=False),
        # A short code to count by (malformed, missing_media, path_escape, ...).
        pa.field("reason", pa.string(), nullable=False),
        # What was wrong and where: the field and the detail.
        pa.field("error", pa.string(), nullable=False),
        # The raw input as text: the JSON line, or the row serialized as JSON.
        pa.field("raw", pa.string()),
    ]
)


def rows_table(rows: list[dict]) -> pa.Table:
    """Build a table with ROW_SCHEMA from normalized row dicts."""
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def quarantine_table(rows: list[dict]) -> pa.Table:
    """Build a table with QUARANTINE_SCHEMA from quarantine dicts."""
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)


def empty_rows() -> pa.Table:
    return ROW_SCHEMA.empty_table()


def empty_quarantine() -> pa.Table:
    return QUARANTINE_SCHEMA.empty_table()

"""Property: whatever a pool line holds (arbitrary JSON structure, arbitrary bytes), the reader
and normalisation give a row or a quarantined row with a reason, never another exception, and
every line read is accounted for. Over 10,000 generated JSONL records per run (slow: ~1.5
minutes on 2 shared cores), Parquet rows of our schema with any field null or odd."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from operators.formats.readers import plan_chunks, read_chunk
from operators.formats.records import RecordOptions
from operators.row_errors import rows_read
from operators.schema import ROW_SCHEMA

EXAMPLES, PER_EXAMPLE = 210, 50  # >= 10,000 JSONL records

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
any_json = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
speaker = st.sampled_from(["human", "gpt", "system", "user", "bot", ""]) | any_json
turn = st.fixed_dictionaries({"from": speaker, "value": st.text(max_size=20) | any_json})
media = st.sampled_from(["ok.png", "missing.png", "../escape.png", "/etc/passwd", "a\0b"])
llava_like = st.fixed_dictionaries(
    {"conversations": st.lists(turn, max_size=4) | any_json},
    optional={
        "id": any_json,
        "image": media | st.lists(media, max_size=3) | any_json,
        "video": media | any_json,
        "source": any_json,
        "category": any_json,
        "answer": any_json,
        "extra": any_json,
    },
)
line = (
    llava_like.map(lambda r: json.dumps(r).encode())
    | any_json.map(lambda r: json.dumps(r).encode())
    | st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" "))
    | st.just(b"")
)


def _check(path, root, forced=None) -> int:
    (chunk,) = plan_chunks(str(path), forced=forced)
    rows, bad = read_chunk(chunk, RecordOptions(str(root)))
    assert rows.schema.equals(ROW_SCHEMA)
    assert all(bad.column("reason").to_pylist()) and all(bad.column("error").to_pylist())
    assert rows.num_rows + bad.num_rows == rows_read(bad.schema)
    origins = [o.rsplit(":", 1)[1] for o in rows.column("origin").to_pylist()]
    origins += [o.rsplit(":", 1)[1] for o in bad.column("origin").to_pylist()]
    return sorted(map(int, origins))


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(line, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
def test_every_jsonl_line_becomes_a_row_or_a_quarantined_row(tmp_path, lines):
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    # a first line such as `[` reads as a JSON list by content; the user says JSON lines
    assert _check(path, tmp_path, forced="jsonl") == list(range(len(lines)))


text = st.text(max_size=10)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "x"]) | st.none()})
message = message.flatmap(
    lambda m: st.fixed_dictionaries({"content": text | st.none()}).map(lambda c: {**m, **c})
)
schema_row = st.fixed_dictionaries(
    {
        "id": text | st.none(),
        "source": text | st.none(),
        "media_type": st.sampled_from(["image", "video", "text", "audio"]) | st.none(),
        "media": st.lists(media, max_size=2) | st.none(),
        "video_id": text | st.none(),
        "messages": st.lists(message, max_size=3) | st.none(),
        "category": text | st.none(),
        "answer": text | st.none(),
        "extra": text | st.none(),
        "origin": text | st.none(),
    }
)
LOOSE = pa.schema([f.with_nullable(True) for f in ROW_SCHEMA])


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(schema_row, min_size=1, max_size=30))
def test_every_parquet_row_becomes_a_row_or_a_quarantined_row(tmp_path, rows):
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    path = tmp_path / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=LOOSE), path)
    assert _check(path, tmp_path) == list(range(len(rows)))

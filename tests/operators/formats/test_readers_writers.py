import json

import pyarrow as pa
import pyarrow.parquet as pq

from operators.formats.readers import iter_chunk_tables, json_array_to_jsonl, plan_chunks
from operators.formats.records import RecordOptions
from operators.formats.writers import export_llava
from operators.schema import ROW_SCHEMA


def _read_all(path, root):
    rows, bad = [], []
    for table, quarantined in iter_chunk_tables(str(path), RecordOptions(str(root))):
        rows += table.to_pylist()
        bad += quarantined.to_pylist()
    return rows, bad


def test_chunks_cover_every_line_with_exact_line_numbers(small_pool):
    path = small_pool / "pool.jsonl"
    chunks = plan_chunks(str(path), chunk_bytes=2000)
    assert len(chunks) > 10
    assert chunks[0].start == 0 and chunks[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))
    rows, bad = _read_all(path, small_pool)
    lines = sorted(int(r["origin"].rsplit(":", 1)[1]) for r in rows + bad)
    assert lines == list(range(400))
    for row in rows[:50]:
        line = int(row["origin"].rsplit(":", 1)[1])
        assert row["id"] == f"syn-{line:07d}"


def test_llava_jsonl_round_trip_reproduces_records(small_pool, tmp_path):
    rows, _ = _read_all(small_pool / "pool.jsonl", small_pool)
    out = tmp_path / "export.jsonl"
    assert export_llava(rows, str(out), str(small_pool)) == len(rows)
    originals = {}
    for line in (small_pool / "pool.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        originals[record.get("id")] = record
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) == len(rows)
    for record in exported:
        assert record == originals[record["id"]]


def test_json_list_input_and_export(tmp_path, small_pool):
    records = [
        json.loads(line)
        for line in (small_pool / "pool.jsonl").read_text().splitlines()
        if line.startswith("{") and line.endswith("}")
    ][:50]
    records[3]["extra_field"] = {"nested": [1, 2]}
    del records[4]["id"]
    source = tmp_path / "pool.json"
    source.write_text(json.dumps(records, indent=1))
    staged = tmp_path / "pool.jsonl"
    assert json_array_to_jsonl(str(source), str(staged)) == 50
    rows, bad = _read_all(staged, small_pool)
    ok_ids = {r.get("id") for r in records}
    assert len(rows) + len(bad) == 50
    exported = tmp_path / "export.json"
    export_llava(rows, str(exported), str(small_pool))
    back = json.loads(exported.read_text())
    assert {json.dumps(r, sort_keys=True) for r in back} <= {
        json.dumps(r, sort_keys=True) for r in records
    }
    assert len(back) == len(rows) and None in ok_ids


def test_broken_json_list_tail_is_quarantined_not_fatal(tmp_path):
    source = tmp_path / "pool.json"
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    source.write_text("[" + json.dumps(good) + ', {"conversations": [ }')
    staged = tmp_path / "pool.jsonl"
    assert json_array_to_jsonl(str(source), str(staged)) == 2
    rows, bad = _read_all(staged, tmp_path)
    assert len(rows) == 1 and len(bad) == 1
    assert bad[0]["reason"] == "malformed" and bad[0]["origin"].endswith(":1")


def test_non_utf8_and_invalid_json_lines_are_quarantined(tmp_path):
    path = tmp_path / "pool.jsonl"
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    path.write_bytes(json.dumps(good).encode() + b"\n\xff\xfe bad\n{nope\n\n" + b"[1, 2]\n")
    rows, bad = _read_all(path, tmp_path)
    assert len(rows) == 1
    assert [b["origin"].rsplit(":", 1)[1] for b in bad] == ["1", "2", "3", "4"]
    assert [b["reason"] for b in bad] == ["malformed", "malformed", "blank_line", "malformed"]
    assert "not UTF-8" in bad[0]["error"] and "invalid JSON" in bad[1]["error"]


def test_parquet_input_with_our_schema(tmp_path, small_pool):
    rows, _ = _read_all(small_pool / "pool.jsonl", small_pool)
    table = pa.Table.from_pylist(rows[:40], schema=ROW_SCHEMA)
    broken = rows[40] | {"media_type": "audio"}
    table = pa.concat_tables([table, pa.Table.from_pylist([broken], schema=ROW_SCHEMA)])
    pq.write_table(table, tmp_path / "pool.parquet")
    again, bad = _read_all(tmp_path / "pool.parquet", small_pool)
    assert [r["id"] for r in again] == [r["id"] for r in rows[:40]]
    assert len(bad) == 1 and bad[0]["id"] == rows[40]["id"] and "media_type" in bad[0]["error"]

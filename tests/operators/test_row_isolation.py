"""Inputs real pools contain that must be quarantined per row, never stop the reader: a small
PNG declaring a canvas over the decompression-bomb limit, a JSON line nested thousands of
levels deep, strings Arrow cannot store, blank lines (counted as read)."""

import json
import struct
import zlib

from PIL import Image

from operators.formats.readers import plan_chunks, read_chunk
from operators.formats.records import RecordOptions
from operators.row_errors import row_by_row, rows_read


def _png_declaring(path, width: int, height: int) -> None:
    """A PNG whose header declares width x height (1-bit grey) with one tiny IDAT: a few
    hundred bytes on disk, billions of pixels when decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
    path.write_bytes(png + chunk(b"IEND", b""))


def _record(image=None, id_="r", text="What is shown?"):
    record = {"id": id_, "conversations": [{"from": "human", "value": text}]}
    record["conversations"].append({"from": "gpt", "value": "a square"})
    if image:
        record["image"] = image
    return record


def _read(path, root):
    (chunk,) = plan_chunks(str(path))
    rows, bad = read_chunk(chunk, RecordOptions(str(root)))
    return rows.to_pylist(), bad.to_pylist(), rows_read(bad.schema)


def test_bomb_png_deep_json_and_unstorable_text_are_quarantined(tmp_path):
    _png_declaring(tmp_path / "bomb.png", 40_000, 40_000)
    assert (tmp_path / "bomb.png").stat().st_size < 1000
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "ok.png")
    lines = [
        json.dumps(_record("ok.png", "good-1")),
        json.dumps(_record("bomb.png", "bomb")),
        '{"id": "deep", "conversations": ' + "[" * 100_000 + "]" * 100_000 + "}",
        json.dumps(_record(None, "surrogate", "lone \ud800 surrogate")),
        "",
        "   ",
        json.dumps(_record(None, "good-2")),
    ]
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows, bad, read = _read(path, tmp_path)
    assert [r["id"] for r in rows] == ["good-1", "good-2"]
    by_line = {int(b["origin"].rsplit(":", 1)[1]): b for b in bad}
    assert sorted(by_line) == [1, 2, 3, 4, 5]
    assert by_line[1]["reason"] == "corrupt_media" and "decompression bomb" in by_line[1]["error"]
    assert by_line[2]["reason"] == "malformed" and "nested too deep" in by_line[2]["error"]
    assert by_line[3]["reason"] == "unstorable" and by_line[3]["id"] == "surrogate"
    assert "UnicodeEncodeError" in by_line[3]["error"]
    assert by_line[4]["reason"] == by_line[5]["reason"] == "blank_line"
    assert read == len(lines) == len(rows) + len(bad)


def test_a_last_line_without_newline_is_read_and_counted(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text(json.dumps(_record(None, "a")) + "\n\n" + json.dumps(_record(None, "b")))
    rows, bad, read = _read(path, tmp_path)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert [b["reason"] for b in bad] == ["blank_line"] and read == 3


def test_row_by_row_retries_a_failing_batch_one_item_at_a_time():
    calls = []

    def double(items):
        calls.append(list(items))
        if any(x < 0 for x in items):
            raise ValueError("negative")
        return [2 * x for x in items]

    results, failures = row_by_row([1, -2, 3], double)
    assert results == [(0, [2]), (2, [6])]
    assert [(i, str(e)) for i, e in failures] == [(1, "negative")]
    assert calls[0] == [1, -2, 3] and len(calls) == 4
    assert row_by_row([1, 2], double) == ([(-1, [2, 4])], [])

"""Input formats read without Ray: ms-swift / LLaMA-Factory messages, OpenAI content parts,
HF datasets Parquet with embedded media, BOM, detection by content, placeholders."""

import gzip
import hashlib
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from operators.formats.detect import FormatError, detect_format
from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions
from ray_jobs.synthetic_media import render_video_frames, save_video


def _png(color) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), color, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def media(tmp_path):
    (tmp_path / "red.png").write_bytes(_png((255, 0, 0)))
    (tmp_path / "blue.png").write_bytes(_png((0, 0, 255)))
    obj = {"shape": "circle", "color": "red", "x": 20, "y": 20, "r": 6}
    save_video(render_video_frames(obj, "right", 8, size=64), str(tmp_path / "clip.mp4"))
    return tmp_path


def _read(path, root, store=None, columns=()):
    options = RecordOptions(str(root), media_store=store, columns=columns)
    rows, bad = [], []
    for table, quarantined in iter_chunk_tables(str(path), options):
        rows += table.to_pylist()
        bad += quarantined.to_pylist()
    return rows, bad


def _write_jsonl(path, records, bom=False):
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


SWIFT = {
    "id": "s1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<image><image>Which is red?"},
        {"role": "assistant", "content": "The first."},
    ],
    "images": ["red.png", "blue.png"],
    "tools": "none",
}
PARTS = {
    "id": "p1",
    "messages": [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Where?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Right."}]},
    ],
    "videos": ["clip.mp4"],
}


def test_ms_swift_and_content_parts_with_bom(media):
    rows, bad = _read(_write_jsonl(media / "pool.jsonl", [SWIFT, PARTS], bom=True), media)
    assert bad == []
    swift, parts = rows
    assert swift["id"] == "s1" and swift["media_type"] == "image"
    assert swift["media"] == [str((media / n).resolve()) for n in ("red.png", "blue.png")]
    assert swift["messages"][1] == {"role": "user", "content": "<image><image>Which is red?"}
    assert swift["answer"] == "The first."
    assert json.loads(swift["extra"])["tools"] == "none"
    assert parts["media_type"] == "video" and parts["media"] == [str(media / "clip.mp4")]
    assert parts["messages"][0]["content"] == "<video>Where?"
    assert json.loads(parts["extra"])["_mmcurate"]["content"] == "parts"


def test_inline_image_url_parts_and_column_mapping(media):
    record = {
        "uid": "q1",
        "chat": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "red.png"}},
                    {"type": "text", "text": "Color?"},
                ],
            },
            {"role": "assistant", "content": "red"},
        ],
    }
    path = _write_jsonl(media / "pool.jsonl", [record])
    rows, bad = _read(path, media, columns=(("chat", "messages"), ("uid", "id")))
    assert bad == [] and rows[0]["id"] == "q1"
    assert rows[0]["media"] == [str((media / "red.png").resolve())]
    assert json.loads(rows[0]["extra"])["_mmcurate"]["inline"] is True


def test_placeholder_rules(media):
    swift = {**SWIFT, "messages": [dict(m) for m in SWIFT["messages"]]}
    one_tag = {**swift, "id": "m1"}
    one_tag["messages"][1] = {"role": "user", "content": "<image>Which is red?"}
    video_tag = {**swift, "id": "m2", "messages": [*swift["messages"][:1]]}
    video_tag["messages"] += [
        {"role": "user", "content": "<video>Which?"},
        {"role": "assistant", "content": "x"},
    ]
    untagged = {**swift, "id": "ok", "messages": [dict(m) for m in swift["messages"]]}
    untagged["messages"][1]["content"] = "Which is red?"
    text_tag = {"id": "t1", "messages": one_tag["messages"]}
    path = _write_jsonl(media / "pool.jsonl", [one_tag, video_tag, untagged, text_tag])
    rows, bad = _read(path, media)
    assert [b["id"] for b in bad] == ["m1", "m2", "t1"]
    assert {b["reason"] for b in bad} == {"placeholder_mismatch"}
    assert [r["id"] for r in rows] == ["ok"]
    assert json.loads(rows[0]["extra"])["_mmcurate"]["placeholders"] == "implicit"


def _hf_table(media):
    red, blue = (media / "red.png").read_bytes(), (media / "blue.png").read_bytes()
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    conversations = [
        [{"from": "human", "value": "<image>\nColor?"}, {"from": "gpt", "value": c}]
        for c in ("red", "blue", "red")
    ]
    return pa.table(
        {
            "id": ["h0", "h1", "h2"],
            "image": pa.array(
                [
                    {"bytes": red, "path": "a.png"},
                    {"bytes": blue, "path": None},
                    {"bytes": None, "path": "red.png"},
                ],
                image,
            ),
            "conversations": pa.array(conversations, pa.list_(turn)),
            "data_source": ["x", "y", "z"],
        }
    )


def test_hf_parquet_embedded_media_stored_once_by_content(media, tmp_path):
    pq.write_table(_hf_table(media), media / "hf.parquet")
    store = tmp_path / "run_media"
    rows, bad = _read(media / "hf.parquet", media, store=str(store))
    assert bad == [] and [r["id"] for r in rows] == ["h0", "h1", "h2"]
    red = hashlib.sha256((media / "red.png").read_bytes()).hexdigest()
    assert rows[0]["media"] == [str(store / red[:2] / f"{red}.png")]
    assert rows[2]["media"] == [str((media / "red.png").resolve())]
    assert Image.open(rows[1]["media"][0]).getpixel((0, 0)) == (0, 0, 255)
    assert json.loads(rows[0]["extra"])["data_source"] == "x"
    assert len(list(store.rglob("*.png"))) == 2
    again, _ = _read(media / "hf.parquet", media, store=str(store))
    assert again == rows and len(list(store.rglob("*"))) == 4  # 2 folders + 2 files


def test_detection_by_content_and_errors(media):
    jsonl = _write_jsonl(media / "data.bin", [SWIFT])
    assert detect_format(str(jsonl)) == "jsonl"
    (media / "list.txt").write_bytes(b"\xef\xbb\xbf  [" + json.dumps(SWIFT).encode() + b"]")
    assert detect_format(str(media / "list.txt")) == "json"
    (media / "pool.gz").write_bytes(gzip.compress(jsonl.read_bytes()))
    assert detect_format(str(media / "pool.gz")) == "jsonl"
    pq.write_table(_hf_table(media), media / "hf.data")
    assert detect_format(str(media / "hf.data")) == "parquet"
    with pytest.raises(FormatError, match=r"notes.txt.*tried json, jsonl, parquet"):
        (media / "notes.txt").write_text("hello")
        detect_format(str(media / "notes.txt"))
    with pytest.raises(FormatError, match="input_format is 'parquet'"):
        detect_format(str(jsonl), "parquet")


def test_json_lines_whose_first_line_is_odd(media):
    record = json.dumps(SWIFT).encode()
    (media / "pretty.txt").write_bytes(b"[\n  " + record + b"\n]\n")
    assert detect_format(str(media / "pretty.txt")) == "json"  # a pretty-printed JSON list
    (media / "lists.txt").write_bytes(b"[1, 2]\n" + record + b"\n")
    assert detect_format(str(media / "lists.txt")) == "jsonl"  # a first record that is a list
    (media / "garbled.jsonl").write_bytes(b"\xff garbage\n" + record + b"\n")
    assert detect_format(str(media / "garbled.jsonl")) == "jsonl"  # named so: lines are read
    (media / "garbled.txt").write_bytes(b"\xff garbage\n" + record + b"\n")
    with pytest.raises(FormatError):
        detect_format(str(media / "garbled.txt"))
    assert detect_format(str(media / "pretty.txt"), "jsonl") == "jsonl"  # the user says so


def test_a_text_file_that_starts_with_a_compression_magic_is_text(media):
    record = json.dumps(SWIFT).encode()
    (media / "magic.jsonl").write_bytes(b"(\xb5/\xfd\n" + record + b"\n")  # zstd's magic
    assert detect_format(str(media / "magic.jsonl")) == "jsonl"
    (media / "gzmagic.jsonl").write_bytes(b"\x1f\x8b junk\n" + record + b"\n")  # gzip's
    assert detect_format(str(media / "gzmagic.jsonl")) == "jsonl"
    (media / "real.gz").write_bytes(gzip.compress(record + b"\n"))
    assert detect_format(str(media / "real.gz")) == "jsonl"


def test_text_lines_that_start_like_parquet_or_a_tar_are_text(media):
    record = json.dumps(SWIFT).encode()
    (media / "par.jsonl").write_bytes(b"PAR1 not parquet\n" + record + b"\n")
    assert detect_format(str(media / "par.jsonl")) == "jsonl"
    fake_tar = b"{" + b" " * 256 + b"ustar" + b" " * 300 + b"}\n" + record + b"\n"
    (media / "tarlike.jsonl").write_bytes(fake_tar)
    assert detect_format(str(media / "tarlike.jsonl")) == "jsonl"

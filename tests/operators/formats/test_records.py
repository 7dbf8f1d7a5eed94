import json

import numpy as np
import pytest
from PIL import Image

from operators.formats.records import RecordOptions, RowError, derive_id, normalize_llava


@pytest.fixture
def root(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img.png")
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    return tmp_path


def _record(**fields):
    base = {
        "id": "r1",
        "image": "img.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat color?"},
            {"from": "gpt", "value": "red"},
        ],
    }
    base.update(fields)
    return base


def _norm(record, root, origin="pool.jsonl:0"):
    return normalize_llava(record, origin, json.dumps(record), RecordOptions(str(root)))


def test_llava_record_maps_to_row(root):
    row = _norm(_record(split="train", source="llava"), root)
    assert row["media_type"] == "image"
    assert row["media"] == [str((root / "img.png").resolve())]
    assert row["messages"] == [
        {"role": "user", "content": "<image>\nWhat color?"},
        {"role": "assistant", "content": "red"},
    ]
    assert row["answer"] == "red" and row["source"] == "llava" and row["video_id"] == "img.png"
    extra = json.loads(row["extra"])
    assert extra["split"] == "train"
    assert extra["_mmcurate"]["given"] == ["id", "source"]


def test_text_only_record_and_derived_id_is_stable(root):
    record = _record()
    del record["image"], record["id"]
    record["conversations"][0]["value"] = "What color?"
    row = _norm(record, root)
    assert row["media_type"] == "text" and row["media"] == []
    assert row["id"] == derive_id("pool", "pool.jsonl:0", json.dumps(record))
    assert row["id"] == _norm(record, root)["id"]
    assert row["id"] != _norm(record, root, origin="pool.jsonl:1")["id"]


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"conversations": []}, "malformed", "conversations"),
        ({"conversations": [{"from": "human", "value": "q"}]}, "malformed", "conversations"),
        ({"conversations": [{"from": "bot", "value": "q"}]}, "malformed", "from"),
        ({"conversations": [{"from": "human", "value": 3}]}, "malformed", "value"),
        ({"image": 7}, "malformed", "image"),
        ({"id": ["x"]}, "malformed", "id"),
        ({"video": "v.mp4"}, "malformed", "image"),
        ({"image": "missing.png"}, "missing_media", "image"),
        ({"image": "bad.png"}, "corrupt_media", "image"),
        ({"image": "../outside.png"}, "path_escape", "image"),
    ],
)
def test_bad_records_raise_with_reason_and_field(root, fields, reason, field):
    with pytest.raises(RowError) as caught:
        _norm(_record(**fields), root)
    assert caught.value.reason == reason
    assert caught.value.field == field
    assert field in str(caught.value)


def test_escaping_path_is_never_opened(root, monkeypatch):
    import operators.formats.records as records

    opened = []
    monkeypatch.setattr(records, "probe_media", lambda path, kind: opened.append(path))
    with pytest.raises(RowError):
        _norm(_record(image="/etc/hostname"), root)
    assert opened == []

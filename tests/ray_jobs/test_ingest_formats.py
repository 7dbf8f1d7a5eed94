"""`mmcurate ingest` on local Ray over compressed and mixed-format inputs, and repeated ids
across parallel shards (quarantined, or renamed by the stated rule)."""

import gzip
import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_jobs.ingest import IngestConfig, ingest


def _record(i: int, row_id: str | None = None) -> dict:
    return {
        "id": row_id or f"r{i}",
        "messages": [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ],
    }


def _jsonl(records) -> bytes:
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


def _zstd(path, data: bytes):
    with pa.CompressedOutputStream(str(path), "zstd") as out:
        out.write(data)


def test_gzip_zstd_json_list_and_bom_read_in_order(ray_session, tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    records = [_record(i) for i in range(60)]
    (data / "a.jsonl.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + _jsonl(records[:20])))
    _zstd(data / "b.json.zst", json.dumps(records[20:40]).encode())
    (data / "c.jsonl").write_bytes(b"\xef\xbb\xbf" + _jsonl(records[40:]))
    counts = ingest(IngestConfig(str(data), str(tmp_path / "run"), chunk_bytes=400))
    assert counts["input"] == counts["kept"] == 60 and counts["reasons"] == {}
    rows = pq.read_table(tmp_path / "run" / "pool").to_pylist()
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(60)]
    assert rows[0]["origin"] == f"{data / 'a.jsonl.gz'}:0"
    assert rows[25]["origin"] == f"{data / 'b.json.zst'}:5"


@pytest.mark.parametrize("policy", ["quarantine", "rename"])
def test_repeated_ids_across_shards(ray_session, tmp_path, policy):
    ids = ["a", "b", "a", "c", "b#dup1", "a", "b"] * 3 + ["d"]
    path = tmp_path / "pool.jsonl"
    path.write_bytes(_jsonl(_record(i, row_id) for i, row_id in enumerate(ids)))
    run = tmp_path / "run"
    config = IngestConfig(str(path), str(run), chunk_bytes=200, on_duplicate_id=policy)
    counts = ingest(config)
    assert counts["shards"] > 3 and counts["input"] == len(ids)
    rows = pq.read_table(run / "pool").to_pylist()
    kept = [r["id"] for r in rows]
    assert len(set(kept)) == len(kept)
    if policy == "quarantine":
        assert kept == ["a", "b", "c", "b#dup1", "d"]
        bad = pq.read_table(run / "quarantine" / "ingest").to_pylist()
        assert counts["reasons"] == {"duplicate_id": len(ids) - 5} and len(bad) == len(ids) - 5
        first_a = f"{path}:0"
        assert all(first_a in q["error"] for q in bad if q["id"] == "a")
        assert [json.loads(q["raw"])["messages"][0]["content"] for q in bad][:2] == [
            "question 2",
            "question 5",
        ]
    else:
        assert counts["kept"] == len(ids) and counts["reasons"] == {}
        assert kept[:7] == ["a", "b", "a#dup1", "c", "b#dup1", "a#dup2", "b#dup2"]
        assert kept[7:12] == ["a#dup3", "b#dup3", "a#dup4", "c#dup1", "b#dup1#dup1"]
        given = json.loads(rows[2]["extra"])["_mmcurate"]["given_id"]
        assert given == "a" and [r["answer"] for r in rows] == [f"answer {i}" for i in range(22)]
    assert ingest(config) == counts  # complete: the rerun reads the marker


def _tar(path, files: dict[str, bytes]):
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_webdataset_shards_through_ray_data(ray_session, tmp_path):
    import numpy as np
    from PIL import Image

    from ray_jobs.synthetic_media import render_video_frames, save_video

    png = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), (10, 200, 30), np.uint8)).save(png, format="PNG")
    obj = {"shape": "circle", "color": "red", "x": 20, "y": 20, "r": 6}
    save_video(render_video_frames(obj, "right", 8, size=64), str(tmp_path / "clip.mp4"))
    llava = {
        "id": "w0",
        "conversations": [
            {"from": "human", "value": "<image>\nColor?"},
            {"from": "gpt", "value": "green"},
        ],
    }
    swift = {
        "id": "w1",
        "messages": [
            {"role": "user", "content": "<video>Where?"},
            {"role": "assistant", "content": "right"},
        ],
    }
    two = {
        "id": "w3",
        "messages": [
            {"role": "user", "content": "<image><image>Same?"},
            {"role": "assistant", "content": "yes"},
        ],
    }
    shards = tmp_path / "shards"
    shards.mkdir()
    _tar(
        shards / "a.tar",
        {
            "000.json": json.dumps(llava).encode(),
            "000.png": png.getvalue(),
            "001.json": json.dumps(swift).encode(),
            "001.mp4": (tmp_path / "clip.mp4").read_bytes(),
        },
    )
    _tar(
        shards / "b.tar",
        {
            "002.json": b"{broken",
            "002.png": png.getvalue(),
            "003.json": json.dumps(two).encode(),
            "003.0.png": png.getvalue(),
            "003.1.png": png.getvalue(),
        },
    )
    run = tmp_path / "run"
    counts = ingest(IngestConfig(str(shards), str(run)))
    assert counts["input"] == 4 and counts["kept"] == 3 and counts["reasons"] == {"malformed": 1}
    rows = pq.read_table(run / "pool").to_pylist()
    assert [r["id"] for r in rows] == ["w0", "w1", "w3"]
    assert [r["media_type"] for r in rows] == ["image", "video", "image"]
    assert rows[2]["media"][0] == rows[2]["media"][1] == rows[0]["media"][0]  # stored once
    assert Image.open(rows[0]["media"][0]).getpixel((0, 0)) == (10, 200, 30)
    assert rows[1]["origin"] == f"{shards / 'a.tar'}:001"
    bad = pq.read_table(run / "quarantine" / "ingest").to_pylist()
    assert bad[0]["origin"].endswith("b.tar:002") and "not JSON" in bad[0]["error"]

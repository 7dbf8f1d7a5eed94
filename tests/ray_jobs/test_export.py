"""`mmcurate export` of a selected subset in every format, re-ingested (round trip), and the
exports loaded by their consumers' own code (`datasets`, a processor's chat template)."""

import hashlib
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ray_jobs.export import ExportConfig, export, subset_rows
from ray_jobs.ingest import IngestConfig, ingest
from ray_jobs.synthetic_media import render_video_frames, save_video


def _png(path, color):
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), color, np.uint8)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def _turns(question, answer):
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.fixture(scope="module")
def selected(ray_session, tmp_path_factory):
    """A run with a shuffled 9-row subset of a mixed pool (LLaVA images / text, ms-swift video,
    content parts), so manifest order differs from pool order."""
    data = tmp_path_factory.mktemp("export_in")
    for k in range(3):
        _png(data / f"img{k}.png", (80 * k, 30, 200))
    obj = {"shape": "square", "color": "blue", "x": 20, "y": 20, "r": 6}
    save_video(render_video_frames(obj, "down", 8, size=64), str(data / "clip.mp4"))
    llava = [
        {"id": f"L{k}", "image": f"img{k}.png", "conversations": _turns("<image>\nColor?", "c")}
        for k in range(3)
    ]
    llava += [{"id": "T0", "conversations": _turns("Say hi.", "hi"), "split": "dev"}]
    llava += [{"id": "L3", "image": ["img0.png", "img1.png"], "conversations": _turns("Q", "a")}]
    (data / "a.jsonl").write_text("\n".join(json.dumps(r) for r in llava) + "\n")
    user = {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Where?"}]}
    swift = [
        {"id": f"V{k}", "messages": [user, {"role": "assistant", "content": "down"}]}
        | {"videos": ["clip.mp4"]}
        for k in range(2)
    ]
    swift += [
        {
            "id": f"S{k}",
            "messages": [
                {"role": "system", "content": "Short."},
                {"role": "user", "content": f"<image>Which {k}?"},
                {"role": "assistant", "content": "that"},
            ],
            "images": ["img2.png"],
        }
        for k in range(2)
    ]
    (data / "b.jsonl").write_text("\n".join(json.dumps(r) for r in swift) + "\n")
    run = tmp_path_factory.mktemp("export_run")
    assert ingest(IngestConfig(str(data), str(run)))["kept"] == 9
    # the subset as `mmcurate select` writes it (id, position, stage), in a shuffled order:
    # select itself needs the score stage, which this test does not run
    ids = pq.read_table(run / "pool", columns=["id"]).column("id").to_pylist()
    order = np.random.default_rng(1).permutation(len(ids))
    subset = {"id": [ids[k] for k in order], "position": np.arange(9), "stage": ["all"] * 9}
    (run / "subsets" / "pick").mkdir(parents=True)
    pq.write_table(pa.table(subset), run / "subsets" / "pick" / "subset.parquet")
    return run, data


def _content_key(row, explicit=False):
    """What a round trip must keep: id, media type, the media bytes, turns, answer. With
    `explicit`, untagged media are tagged at the start of the first user turn (the rule)."""
    digests = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in row["media"]]
    turns = [[m["role"], m["content"].replace("<image>\n", "<image>")] for m in row["messages"]]
    implicit = json.loads(row["extra"])["_mmcurate"].get("placeholders") == "implicit"
    if explicit and implicit:
        first = next(t for t in turns if t[0] == "user")
        first[1] = f"<{row['media_type']}>" * len(digests) + first[1]
    return row["id"], row["media_type"], digests, turns, row["answer"]


CASES = [
    ("llava", "out.jsonl", "relative"),
    ("llava", "out.json", "copy"),
    ("swift", "swift.jsonl", "copy"),
    ("trl", "trl.jsonl", "relative"),
    ("trl", "trl.parquet", "embed"),
    ("parquet", "rows.parquet", "relative"),
]


@pytest.mark.parametrize(("fmt", "name", "media"), CASES)
def test_export_round_trip(selected, tmp_path, fmt, name, media):
    run, data = selected
    out = tmp_path / name
    root = str(data) if media == "relative" else None
    counts = export(ExportConfig(str(run), "pick", fmt, str(out), media, root))
    assert counts["rows"] == 9
    expected = subset_rows(str(run), "pick").to_pylist()
    assert [r["id"] for r in expected] != sorted(r["id"] for r in expected)  # not pool order
    again = tmp_path / "again"
    ingest(IngestConfig(str(out), str(again), media_root=root or str(tmp_path)))
    back = pq.read_table(again / "pool").to_pylist()
    explicit = fmt in ("swift", "trl")
    assert [_content_key(r) for r in back] == [_content_key(r, explicit) for r in expected]
    if fmt == "llava" and media == "relative":
        source = {json.loads(line)["id"]: json.loads(line) for line in open(data / "a.jsonl")}
        exported = [json.loads(line) for line in open(out)]
        assert [r for r in exported if r["id"] in source] == [
            source[r["id"]] for r in exported if r["id"] in source
        ]


def test_swift_export_dataset_info_and_tags(selected, tmp_path):
    run, data = selected
    out = tmp_path / "swift.jsonl"
    export(ExportConfig(str(run), "pick", "swift", str(out), "relative", str(data)))
    info = json.loads((tmp_path / "dataset_info.json").read_text())["pick"]
    assert info["file_name"] == "swift.jsonl" and info["formatting"] == "sharegpt"
    assert info["columns"] == {"messages": "messages", "images": "images", "videos": "videos"}
    records = {r["id"]: r for r in map(json.loads, open(out))}
    assert records["L3"]["messages"][0]["content"] == "<image>\n<image>\nQ"  # implicit -> tags
    assert records["L3"]["images"] == ["img0.png", "img1.png"]
    assert records["T0"]["split"] == "dev" and "images" not in records["T0"]
    for record in records.values():
        tags = sum(m["content"].count("<image>") for m in record["messages"])
        assert tags == len(record.get("images", []))


def test_trl_exports_load_in_datasets_and_a_chat_template(selected, tmp_path):
    import datasets
    from transformers import AutoProcessor

    from training.tiny_models import build_tiny_qwen2_vl

    run, _ = selected
    out = tmp_path / "trl.parquet"
    export(ExportConfig(str(run), "pick", "trl", str(out), "embed"))
    table = datasets.load_dataset("parquet", data_files=str(out), split="train")
    table = table.cast_column("images", datasets.List(datasets.Image()))
    by_id = {r["id"]: r for r in table}
    assert by_id["L3"]["images"][1].size == (16, 16)
    assert by_id["L1"]["images"][0].getpixel((0, 0)) == (80, 30, 200)
    processor = AutoProcessor.from_pretrained(build_tiny_qwen2_vl(str(tmp_path / "tiny")))
    record = json.loads(json.dumps(by_id["S1"]["messages"], default=str))
    for message in record:
        message["content"] = [
            {k: v for k, v in p.items() if v is not None} for p in message["content"]
        ]
    text = processor.apply_chat_template(record, tokenize=False)
    assert text.count("<|image_pad|>") == 1 and "Which 1?" in text and "Short." in text

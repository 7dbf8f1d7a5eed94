import json

import pyarrow.parquet as pq

from operators.media import probe_media
from ray_jobs.synth import synthesize


def _lines(path):
    return (path / "pool.jsonl").read_text().splitlines()


def test_synthesis_is_deterministic(tmp_path, small_pool):
    synthesize(400, str(tmp_path), seed=0, parallel=False)
    assert _lines(tmp_path) == _lines(small_pool)
    truth_a = pq.read_table(tmp_path / "ground_truth.parquet")
    assert truth_a.equals(pq.read_table(small_pool / "ground_truth.parquet"))
    other = tmp_path / "seed1"
    synthesize(50, str(other), seed=1, parallel=False)
    assert _lines(other) != _lines(tmp_path)[:50]


def test_ground_truth_describes_each_line(small_pool):
    truth = pq.read_table(small_pool / "ground_truth.parquet").to_pylist()
    lines = _lines(small_pool)
    assert [t["line"] for t in truth] == list(range(len(lines)))
    records = {}
    for t, line in zip(truth, lines, strict=True):
        if t["defect"] == "malformed":
            assert t["id"] is None
            continue
        record = json.loads(line)
        records[record["id"]] = record
        answer = record["conversations"][-1]["value"]
        question = record["conversations"][0]["value"]
        if t["defect"] == "wrong_answer":
            assert answer != t["true_answer"]
        elif t["defect"] in ("none", "text_answerable", "exact_dup", "near_dup"):
            assert answer == t["true_answer"]
        if t["defect"] == "text_answerable" and t["style"] != "multi-choice":
            assert t["true_answer"] in question or t["style"] == "yes/no"
    for t in truth:
        if t["defect"] == "exact_dup":
            copy, original = dict(records[t["id"]]), dict(records[t["dup_of"]])
            copy.pop("id"), original.pop("id")
            assert copy == original
        if t["defect"] == "near_dup" and t["dup_kind"] == "word_edit":
            edited = records[t["id"]]["conversations"][0]["value"]
            assert edited != records[t["dup_of"]]["conversations"][0]["value"]


def test_media_is_real_and_decodes(small_pool):
    truth = pq.read_table(small_pool / "ground_truth.parquet").to_pylist()
    clean = [t for t in truth if t["defect"] == "none"]
    videos = [t for t in clean if t["category"] in ("temporal", "static_video")][:5]
    lines = _lines(small_pool)
    for t in videos:
        record = json.loads(lines[t["line"]])
        facts = probe_media(str(small_pool / record["video"]), "video")
        assert 8 <= facts.num_frames <= 16 and facts.width == 64
    assert {t["category"] for t in clean} == {"general", "chart", "ocr", "temporal",
                                              "static_video"}


def test_parallel_generation_matches_sequential(ray_session, tmp_path, small_pool):
    synthesize(400, str(tmp_path), seed=0, parallel=True)
    assert _lines(tmp_path) == _lines(small_pool)

"""Capability scores: robust parsing, batched prompted scoring, imports, the offline scorer."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from operators.capabilities import (
    CAPABILITIES,
    CAPABILITY_COLUMNS,
    EmbeddingCapabilityScorer,
    ImportedCapabilityScores,
    PromptedCapabilityScorer,
    PromptedScorerConfig,
    capability_column,
    load_capability_scores,
    parse_score,
)
from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("4", (4.0, None)),
        ("Score: 3/5", (3.0, None)),
        ("**4**", (4.0, None)),
        ("I would rate it 2 out of 5.", (2.0, None)),
        ("On a scale of 0 to 5, I rate this instance 1.", (1.0, None)),
        ("Rating: 4.5 - very helpful for OCR.", (4.5, None)),
        ("8/10", (4.0, None)),
        ("five", (5.0, None)),
        ("The VQA instance is helpful.", (None, "no_number")),
        ("", (None, "empty")),
        (None, (None, "empty")),
        ("7", (None, "out_of_range")),
        ("Score: 3/0", (None, "bad_fraction")),
    ],
)
def test_parse_score(reply, expected):
    assert parse_score(reply) == expected


def test_capability_columns():
    assert len(CAPABILITIES) == 14 == len(set(CAPABILITY_COLUMNS))
    assert capability_column("object spatial understanding") == "cap_object_spatial_understanding"
    assert capability_column("OCR") == capability_column("cap_ocr") == "cap_ocr"


def qa(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


REPLIES = ["4", "Score: 3/5", "I cannot rate this.", "**5**"]


def make_cycling_generate():
    """Replies cycle through real-looking outputs; records the batch sizes it is called with."""
    state = {"n": 0, "calls": [], "prompts": []}

    def generate(prompts):
        state["calls"].append(len(prompts))
        state["prompts"].extend(prompts)
        out = [REPLIES[(state["n"] + i) % len(REPLIES)] for i in range(len(prompts))]
        state["n"] += len(prompts)
        return out

    generate.state = state
    return generate


def test_prompted_scorer_batches_parses_and_counts():
    config = PromptedScorerConfig(capabilities=("OCR", "stem knowledge"), batch_size=3)
    scorer = PromptedCapabilityScorer(config, make_cycling_generate)
    table = pa.table({"id": ["a", "b", "c"], "messages": [qa("What word is it?", "cat")] * 3})
    out = scorer(table)
    state = scorer.generate.state
    assert state["calls"] == [3, 3]  # 3 rows x 2 capabilities in batches of 3
    assert "for OCR?" in state["prompts"][0] and "Question: What word is it?" in state["prompts"][0]
    # replies in (row, capability) order: 4, 3, null, 5, 4, 3
    assert out["cap_ocr"].to_pylist() == [4.0, None, 4.0]
    assert out["cap_stem_knowledge"].to_pylist() == [3.0, 5.0, 3.0]
    assert scorer.stats == {"parsed": 5, "no_number": 1}
    errors = out["capability_errors"].to_pylist()
    assert errors[0] is None and json.loads(errors[1]) == {"cap_ocr": "no_number"}
    assert out.num_rows == 3 and out["id"].to_pylist() == ["a", "b", "c"]


def test_import_scores_from_jsonl_and_parquet(tmp_path):
    lines = [
        {"id": "a", "OCR": 4, "stem knowledge": "2.5"},
        {"id": "b", "scores": {"cap_ocr": 9, "humanities": 1}},
        {"id": "c", "ocr": "high", "mystery skill": 3},
        {"no_id": 1},
    ]
    path = tmp_path / "scores.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    index, matrix, stats = load_capability_scores(str(path))
    ocr = CAPABILITY_COLUMNS.index("cap_ocr")
    assert matrix[index["a"], ocr] == 4 and np.isnan(matrix[index["b"], ocr])
    assert stats["out_of_range"] == 1 and stats["not_a_number"] == 1
    assert stats["unknown_capability"] == 1 and stats["missing_id"] == 1
    assert stats["malformed_line"] == 1 and stats["ids"] == 3
    pq.write_table(pa.table({"id": ["a", "z"], "cap_ocr": [1.0, 2.0]}), tmp_path / "s.parquet")
    operator = ImportedCapabilityScores(str(tmp_path / "s.parquet"))
    out = operator(pa.table({"id": ["z", "q", "a"], "messages": [qa("q", "a")] * 3}))
    assert out["cap_ocr"].to_pylist() == [2.0, None, 1.0]
    assert out["cap_humanities"].null_count == 3 and operator.stats["id_not_in_file"] == 1


@pytest.fixture(scope="module")
def embedding_scorer():
    return EmbeddingCapabilityScorer()


def test_offline_scorer_follows_the_pool_categories(embedding_scorer, small_pool):
    """OCR rows score higher on OCR, charts on data understanding, motion on activity."""
    options = RecordOptions(media_root=str(small_pool), source="pool", check_media=False)
    path = os.path.join(small_pool, "pool.jsonl")
    rows = pa.concat_tables([r for r, _ in iter_chunk_tables(path, options)])
    truth = pq.read_table(os.path.join(small_pool, "ground_truth.parquet")).to_pandas()
    category = dict(zip(truth["id"], truth["category"], strict=True))
    out = embedding_scorer(rows)
    cats = np.array([category[i] for i in out["id"].to_pylist()])
    for cat, column in [
        ("ocr", "cap_ocr"),
        ("chart", "cap_data_understanding"),
        ("temporal", "cap_activity_recognition"),
    ]:
        scores = out[column].to_numpy()
        assert scores[cats == cat].mean() > scores[cats != cat].mean() + 0.8, column
    every = np.stack([out[c].to_numpy() for c in CAPABILITY_COLUMNS])
    assert every.min() >= 0 and every.max() <= 5 and out.num_rows == rows.num_rows


def test_offline_scorer_reuses_an_embedding_column(embedding_scorer):
    table = pa.table({"id": ["a"], "messages": [qa("What does the sign say?", "Stop")]})
    direct = embedding_scorer(table)
    vectors = embedding_scorer.embedder.encode(["What does the sign say?\nStop"])
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    reused = embedding_scorer(table.append_column("text_embedding", column))
    for name in CAPABILITY_COLUMNS:
        assert reused[name].to_pylist() == pytest.approx(direct[name].to_pylist(), abs=1e-4)

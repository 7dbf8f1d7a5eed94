"""Evaluation: teacher-forced exact match agrees with greedy generation, and the summary's
"% of full" and samples-to-reference-peak figures match a hand computation."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from operators.vlm_inputs import InputsConfig
from operators.vlm_runtime import RuntimeConfig, VLMRuntime
from training.evaluate import append_metrics, encode_rows, evaluate, summarize


def test_teacher_forced_accuracy_equals_greedy_generation(warm_model):
    model, rows = warm_model
    runtime = VLMRuntime(RuntimeConfig(model=model, video_as_frames=True))
    table = pq.read_table(rows)
    data = encode_rows(runtime.processor, table, InputsConfig(video_as_frames=True))
    assert len(data.encodings) == 8 and not data.errors
    forced = evaluate(runtime, data, "teacher_forced")
    greedy = evaluate(runtime, data, "generate")
    assert forced["accuracy"] == greedy["accuracy"]
    assert 0 < forced["accuracy_mean"]  # the warm model answers some of its rows
    assert set(forced["accuracy"]) == set(table.column("category").to_pylist())


def _log(path, points):
    for samples, acc in points:
        append_metrics(
            str(path),
            {
                "event": "eval",
                "step": samples // 10,
                "samples_seen": samples,
                "accuracy": {"a": acc},
                "accuracy_mean": acc,
            },
        )


def test_summary_against_a_full_data_reference(tmp_path):
    _log(tmp_path / "full.jsonl", [(0, 0.1), (100, 0.5), (200, 0.8), (300, 0.7)])
    _log(tmp_path / "sub.jsonl", [(0, 0.1), (50, 0.6), (100, 0.85), (150, 0.63)])
    summary = summarize(str(tmp_path / "sub.jsonl"), str(tmp_path / "full.jsonl"))
    assert summary["final_accuracy_mean"] == 0.63 and summary["peak_samples_seen"] == 100
    assert summary["percent_of_full"] == pytest.approx(90.0)  # 0.63 / 0.7
    assert summary["samples_to_reference_peak"] == 100  # first >= 0.8
    assert summarize(str(tmp_path / "missing.jsonl")) == {"evaluations": 0}


def test_chance_line_is_the_best_constant_answer_per_category():
    from training.evaluate import constant_answer_accuracy

    categories = ["color"] * 4 + ["count"] * 2
    answers = ["Red.", "the red", "blue", "green", "3", "4"]
    # color: "red" 2 of 4; count: 1 of 2; mean over categories, not rows
    assert constant_answer_accuracy(categories, answers) == (0.5 + 0.5) / 2
    assert constant_answer_accuracy(["a", "a", "a", "b"], ["x", "x", "y", "z"]) == (2 / 3 + 1) / 2

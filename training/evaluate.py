"""Held-out accuracy per category, the metrics log, and the run summary.

Accuracy is exact answer match under greedy decoding. By default it is computed with one
teacher-forced forward pass: a row is correct when the argmax at every answer position
(through the end-of-turn token) is the reference token, which is exactly when greedy
generation reproduces the answer (ARCHITECTURE.md section 6: agreed on every checked sample,
~0.7 s per 600 rows). `mode="generate"` decodes greedily and compares normalized text, for
models whose tokenization of an answer is not unique.

Training appends one JSON line per evaluation to `RUN/train/NAME/metrics.jsonl`
(samples_seen, step, loss, accuracy per category, mean accuracy, wall time; under an
object-store URI the log is rewritten whole at each line), so the samples
needed to reach a reference can be read off (GDO's peak-match figure); `summarize` adds the
mmSSR "% of full" figure when a full-data run exists.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from operators import storage
from operators.media import MediaError
from operators.row_errors import is_row_error
from operators.vlm_inputs import InputsConfig, RowError, decode_media, encode_row
from training.rewards import normalize_answer

__all__ = [
    "EvalSet",
    "append_metrics",
    "constant_answer_accuracy",
    "encode_rows",
    "evaluate",
    "read_metrics",
    "summarize",
    "truncate_metrics",
    "write_metrics",
]


@dataclass
class EvalSet:
    """Encoded held-out rows, their categories and reference answers."""

    encodings: list
    categories: list[str]
    answers: list[str]
    ids: list[str]
    errors: Counter = field(default_factory=Counter)  # rows that could not be encoded, by reason


def constant_answer_accuracy(categories: list[str], answers: list[str]) -> float:
    """The chance line of a held-out set: the accuracy of answering every row of a category
    with that category's most common (normalized) answer, averaged over categories as
    `accuracy_mean` is. A model that reads nothing does no better than this."""
    by_category: dict[str, Counter] = {}
    for category, answer in zip(categories, answers, strict=True):
        by_category.setdefault(category or "none", Counter())[normalize_answer(answer)] += 1
    if not by_category:
        return float("nan")
    shares = [c.most_common(1)[0][1] / sum(c.values()) for c in by_category.values()]
    return float(np.mean(shares))


def encode_one(processor, row: dict, inputs: InputsConfig):
    """Decode a row's media and encode it; (encoding, None) or (None, reason): the RowError's
    reason, the media error's class, or `processor_error` for whatever else this one row
    raises (the reasons of the batched path, operators/vlm_inputs.py)."""
    try:
        media = decode_media(row, inputs.num_frames)
    except RowError as error:
        return None, error.reason
    except (MediaError, OSError, ValueError) as error:
        return None, type(error).__name__
    try:
        return encode_row(processor, row, media, inputs), None
    except RowError as error:
        return None, error.reason
    except Exception as error:
        if not is_row_error(error):
            raise
        return None, "processor_error"


def encode_rows(processor, rows: pa.Table | list[dict], inputs: InputsConfig) -> EvalSet:
    """Encode held-out rows once (they are reused at every evaluation)."""
    rows = rows.to_pylist() if isinstance(rows, pa.Table) else rows
    out = EvalSet([], [], [], [])
    for row in rows:
        encoding, reason = encode_one(processor, row, inputs)
        if encoding is None:
            out.errors[reason] += 1
            continue
        out.encodings.append(encoding)
        out.categories.append(row.get("category") or "none")
        out.answers.append(str(row.get("answer") or ""))
        out.ids.append(row["id"])
    return out


def evaluate(runtime, data: EvalSet, mode: str = "teacher_forced") -> dict:
    """{"accuracy": {category: acc}, "accuracy_mean", "heldout_loss", "heldout_rows"}.

    runtime: a `VLMRuntime` (its model may be the one being trained). accuracy_mean is the
    unweighted mean over categories, so a large category does not hide a small one.
    """
    if not data.encodings:
        return {"accuracy": {}, "accuracy_mean": float("nan"), "heldout_rows": 0}
    nll, correct = runtime.nll(data.encodings)
    if mode == "generate":
        outputs = runtime.generate(data.encodings, max_new_tokens=16)
        texts = [runtime.decode(seqs[0]) for seqs in outputs]
        correct = np.array(
            [
                normalize_answer(t) == normalize_answer(a)
                for t, a in zip(texts, data.answers, strict=True)
            ]
        )
    elif mode != "teacher_forced":
        raise ValueError(f"unknown evaluation mode {mode!r}")
    categories = np.array(data.categories)
    accuracy = {c: float(correct[categories == c].mean()) for c in sorted(set(data.categories))}
    return {
        "accuracy": accuracy,
        "accuracy_mean": float(np.mean(list(accuracy.values()))),
        "heldout_loss": float(np.nanmean(nll)),
        "heldout_rows": len(data.encodings),
    }


def _lines(records: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def append_metrics(path: str, record: dict) -> None:
    """Append one JSON line (flushed and fsynced, so a killed run keeps what it wrote). An
    object cannot be appended to: under a URI the whole log is rewritten (one GET and one PUT
    of a small object), so the log holds every line or the previous version, never half."""
    if storage.is_remote(path):
        old = storage.read_text(path) if storage.exists(path) else ""
        storage.write_text(path, old + _lines([record]))
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_metrics(path: str, records: list[dict]) -> None:
    """Write a whole log (atomically: a renamed file locally, one object remotely)."""
    if storage.is_remote(path):
        storage.write_text(path, _lines(records))
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(_lines(records))
    os.replace(tmp, path)


def read_metrics(path: str, max_step: int | None = None) -> list[dict]:
    """The metrics log's records (those with step <= max_step when given)."""
    if not storage.exists(path):
        return []
    records = [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]
    return [r for r in records if max_step is None or r.get("step", 0) <= max_step]


def truncate_metrics(path: str, max_step: int) -> None:
    """Drop records of steps after `max_step` (a resumed run rewrites them from its
    checkpoint); max_step < 0 drops everything (a fresh run)."""
    if not storage.exists(path):
        return
    records = [r for r in read_metrics(path) if max_step >= 0 and r.get("step", 0) <= max_step]
    write_metrics(path, records)


def summarize(metrics_path: str, reference_path: str | None = None) -> dict:
    """Final and peak accuracy of a run; against a full-data reference run when given:
    `percent_of_full` (mmSSR: final mean accuracy / reference final mean accuracy x 100) and
    `samples_to_reference_peak` (GDO: the first samples_seen whose mean accuracy reaches the
    reference's peak; None if never)."""
    evals = [r for r in read_metrics(metrics_path) if r.get("event") == "eval"]
    if not evals:
        return {"evaluations": 0}
    final, peak = evals[-1], max(evals, key=lambda r: r["accuracy_mean"])
    out = {
        "evaluations": len(evals),
        "samples_seen": final["samples_seen"],
        "final_accuracy": final["accuracy"],
        "final_accuracy_mean": final["accuracy_mean"],
        "peak_accuracy_mean": peak["accuracy_mean"],
        "peak_samples_seen": peak["samples_seen"],
    }
    if reference_path:
        reference = summarize(reference_path)
        if reference.get("evaluations"):
            full = reference["final_accuracy_mean"]
            out["percent_of_full"] = 100.0 * final["accuracy_mean"] / full if full else None
            target = reference["peak_accuracy_mean"]
            reached = [r["samples_seen"] for r in evals if r["accuracy_mean"] >= target]
            out["reference_peak_accuracy_mean"] = target
            out["samples_to_reference_peak"] = reached[0] if reached else None
    return out

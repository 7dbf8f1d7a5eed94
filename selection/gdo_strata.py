"""GDO strata, budget rule and quotas (Wu & Zhao 2026; rujiewu/GDO gdo/build_pair.py).

A stratum is modality | duration bucket | temporal category | MCQ-or-open | question-length
bucket | answer-length bucket | source group. Quotas follow the pool's stratum frequencies by
largest remainder; the auto budget grows with the strata's effective number and tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from selection.common import (
    column_codes,
    float_column,
    has_column,
    per_unique,
    string_column,
)

__all__ = [
    "FIELDS",
    "PoolFields",
    "a_len_bucket",
    "duration_bucket",
    "largest_remainder",
    "pool_fields",
    "q_len_bucket",
    "recommend_budget",
    "source_group",
    "stratum_codes",
]

FIELDS = ("modality", "duration", "temporal", "form", "q_len", "a_len", "source_group")
MCQ_PATTERN = r"(?i)(\bchoices?\b)|(\nA\.)|(\nA\))"
TEMPORAL_PATTERN = (
    r"(?i)\b(before|after|then|while|during|first|next|finally|sequence|later|earlier|"
    r"transition|happen)\b"
)


def _bucket(x: np.ndarray, edges: tuple[int, ...], names: tuple[str, ...]) -> np.ndarray:
    """names[i] for the first edge with x <= edge, else the last name."""
    return np.array(names, dtype=object)[np.searchsorted(np.array(edges), x, side="left")]


def q_len_bucket(tokens: np.ndarray) -> np.ndarray:
    """<=6 tiny, <=14 short, <=30 medium, <=60 long, else very long."""
    names = ("q_tiny", "q_short", "q_medium", "q_long", "q_very_long")
    return _bucket(tokens, (6, 14, 30, 60), names)


def a_len_bucket(tokens: np.ndarray) -> np.ndarray:
    """<=2 tiny, <=8 short, <=24 medium, <=64 long, else very long."""
    names = ("a_tiny", "a_short", "a_medium", "a_long", "a_very_long")
    return _bucket(tokens, (2, 8, 24, 64), names)


def duration_bucket(frames: np.ndarray) -> np.ndarray:
    """By frame count: <=1 image, <=8, <=24, <=64, <=160, else very long."""
    names = ("image", "very_short", "short", "medium", "long", "very_long")
    return _bucket(frames, (1, 8, 24, 64, 160), names)


def source_group(source: str) -> str:
    """GDO's source grouping: text before "(", else the first four "_" parts."""
    s = " ".join(str(source or "").split())
    if not s:
        return "unknown"
    if "(" in s:
        return s.split("(", 1)[0].strip() or "unknown"
    parts = s.split("_")
    return "_".join(parts[:4]) if len(parts) >= 4 else s


@dataclass
class PoolFields:
    """Per-row stratum fields as strings (object arrays), plus what they were derived from."""

    values: dict[str, np.ndarray]
    temporal_source: str


def _temporal_category(
    table: pa.Table, is_video: np.ndarray, q_raw: pa.Array
) -> tuple[np.ndarray, str]:
    """Temporal / Mixed / Static. From the `temporal` descriptor (1 / 0.5 / 0) where present,
    else GDO's keyword pattern on the question (Temporal if it matches, Mixed otherwise).
    Non-video rows are Static."""

    def keyword(values: pa.Array) -> np.ndarray:
        return pc.match_substring_regex(values, TEMPORAL_PATTERN).to_numpy(zero_copy_only=False)

    words = np.where(per_unique(q_raw, keyword), "Temporal", "Mixed").astype(object)
    source = "keyword"
    if has_column(table, "temporal"):
        t = float_column(table, "temporal")
        from_col = np.where(t >= 0.75, "Temporal", np.where(t <= 0.25, "Static", "Mixed"))
        words = np.where(np.isfinite(t), from_col.astype(object), words)
        source = "temporal column (keyword where null)"
    return np.where(is_video, words, "Static").astype(object), source


def pool_fields(
    table: pa.Table, q_raw: pa.Array, q_tokens: np.ndarray, a_tokens: np.ndarray
) -> PoolFields:
    """The seven stratum fields of every row."""
    media = np.asarray(
        string_column(table, "media_type", "image").to_numpy(zero_copy_only=False), dtype=object
    )
    is_video = media == "video"
    frames = float_column(table, "num_frames") if has_column(table, "num_frames") else None
    if frames is None:
        frames = np.where(is_video, 8.0, 1.0)
    frames = np.where(np.isfinite(frames), frames, 1.0)
    dur = np.where(is_video, duration_bucket(frames), np.where(media == "text", "text", "image"))

    def mcq(values: pa.Array) -> np.ndarray:
        return pc.match_substring_regex(values, MCQ_PATTERN).to_numpy(zero_copy_only=False)

    form = np.where(per_unique(q_raw, mcq), "MCQ", "Open").astype(object)
    temporal, temporal_source = _temporal_category(table, is_video, q_raw)
    src = string_column(table, "source", "unknown")
    groups = per_unique(src, lambda d: pa.array([source_group(s) for s in d.to_pylist()]))
    values = {
        "modality": media,
        "duration": dur.astype(object),
        "temporal": temporal,
        "form": form,
        "q_len": q_len_bucket(q_tokens),
        "a_len": a_len_bucket(a_tokens),
        "source_group": np.asarray(groups.to_numpy(zero_copy_only=False), dtype=object),
    }
    return PoolFields(values=values, temporal_source=temporal_source)


def stratum_codes(fields: PoolFields, rows: np.ndarray) -> tuple[np.ndarray, list[str], dict]:
    """Stratum id per selected-pool row, the stratum labels, and per-field integer codes."""
    codes, key = {}, np.zeros(len(rows), dtype=np.int64)
    for name in FIELDS:
        c, labels = column_codes(pa.array(fields.values[name][rows].astype(str)))
        codes[name] = (c, labels)
        key = key * (len(labels) + 1) + c
    uniq, stratum = np.unique(key, return_inverse=True)
    first = np.zeros(len(uniq), dtype=np.int64)
    first[stratum[::-1]] = np.arange(len(rows))[::-1]
    labels = ["|".join(fields.values[f][rows[i]] for f in FIELDS) for i in first]
    return stratum.astype(np.int64), labels, codes


def largest_remainder(counts: np.ndarray, target: int) -> np.ndarray:
    """Integer quotas proportional to counts summing to target (ties by lower index first)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or target <= 0:
        return np.zeros(len(counts), dtype=np.int64)
    raw = target * counts / total
    quota = np.floor(raw).astype(np.int64)
    remain = int(target - quota.sum())
    if remain > 0:
        order = np.lexsort((np.arange(len(counts)), -(raw - quota)))
        quota[order[:remain]] += 1
    return quota


def recommend_budget(stratum_counts: np.ndarray, total: int, rule: dict) -> tuple[int, dict]:
    """GDO's auto budget: max(min count, min ratio, e^H * strata_mult, tail_target / p_tail),
    capped by max count, max ratio and the pool. p_tail is the probability of the last stratum
    needed to cover `coverage_mass` of the pool, strata taken from most to least frequent."""
    probs = np.sort(stratum_counts[stratum_counts > 0] / float(total))[::-1]
    entropy = float(-(probs * np.log(np.maximum(probs, 1e-12))).sum())
    effective = math.exp(entropy)
    cum = np.cumsum(probs)
    covered = int(min(np.searchsorted(cum, rule["coverage_mass"], side="left") + 1, len(probs)))
    p_tail = float(probs[covered - 1])
    n_eff = int(math.ceil(max(1.0, effective * max(1.0, rule["strata_mult"]))))
    n_tail = int(math.ceil(max(1.0, rule["tail_target"]) / max(p_tail, 1e-9)))
    low = int(math.ceil(total * max(rule["min_ratio"], 0.0)))
    high = int(math.floor(total * max(rule["max_ratio"], 0.0))) or total
    n = max(rule["min_count"], low, n_eff, n_tail)
    n = max(1, min(n, rule["max_count"], high, total))
    info = {
        "mode": "distribution_auto",
        "effective_strata": effective,
        "covered_strata": covered,
        "tail_prob_at_coverage": p_tail,
        "n_from_effective_strata": n_eff,
        "n_from_tail_coverage": n_tail,
        "n_from_min_ratio": low,
        "n_from_max_ratio": high,
        "recommended_count": n,
    }
    return n, info

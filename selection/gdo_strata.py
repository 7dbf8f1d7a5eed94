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
    string_column,
)
from selection.gdo_temporal import LABEL_COLUMN

__all__ = [
    "FIELDS",
    "PoolFields",
    "TEMPORAL",
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


Q_LEN = ("q_tiny", "q_short", "q_medium", "q_long", "q_very_long")
A_LEN = ("a_tiny", "a_short", "a_medium", "a_long", "a_very_long")
DURATION = ("image", "very_short", "short", "medium", "long", "very_long", "text")
TEMPORAL = ("Static", "Mixed", "Temporal")


def _bucket(x: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    """Index of the first edge with x <= edge (len(edges) when above all)."""
    return np.searchsorted(np.array(edges), x, side="left")


def q_len_bucket(tokens: np.ndarray) -> np.ndarray:
    """<=6 tiny, <=14 short, <=30 medium, <=60 long, else very long."""
    return np.array(Q_LEN, dtype=object)[_bucket(tokens, (6, 14, 30, 60))]


def a_len_bucket(tokens: np.ndarray) -> np.ndarray:
    """<=2 tiny, <=8 short, <=24 medium, <=64 long, else very long."""
    return np.array(A_LEN, dtype=object)[_bucket(tokens, (2, 8, 24, 64))]


def duration_bucket(frames: np.ndarray) -> np.ndarray:
    """By frame count: <=1 image, <=8, <=24, <=64, <=160, else very long."""
    return np.array(DURATION, dtype=object)[_bucket(frames, (1, 8, 24, 64, 160))]


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
    """Per-row stratum fields as integer codes into their label lists."""

    codes: dict[str, np.ndarray]
    labels: dict[str, list[str]]
    temporal_source: str

    def is_video(self) -> np.ndarray:
        labels = self.labels["modality"]
        return self.codes["modality"] == (labels.index("video") if "video" in labels else -1)


def _temporal_codes(
    table: pa.Table, is_video: np.ndarray, q_raw: pa.Array
) -> tuple[np.ndarray, str]:
    """0 Static / 1 Mixed / 2 Temporal. From GDO's label `gdo_temporal_label` (0 / 0.5 / 1,
    selection/gdo_temporal.py: >= 0.75 Temporal, <= 0.25 Static, else Mixed) where it has a
    value, else GDO's keyword pattern on the question (Temporal if it matches, else Mixed).
    Non-video rows are Static."""

    def keyword(values: pa.Array) -> np.ndarray:
        return pc.match_substring_regex(values, TEMPORAL_PATTERN).to_numpy(zero_copy_only=False)

    code = np.where(keyword(q_raw), 2, 1)
    source = "keyword"
    if has_column(table, LABEL_COLUMN):
        t = float_column(table, LABEL_COLUMN)
        from_col = np.where(t >= 0.75, 2, np.where(t <= 0.25, 0, 1))
        code = np.where(np.isfinite(t), from_col, code)
        labelled = np.isfinite(t[is_video])
        if labelled.all():
            source = LABEL_COLUMN
        elif labelled.any():
            source = f"{LABEL_COLUMN} (keyword where null)"
    return np.where(is_video, code, 0), source


def pool_fields(
    table: pa.Table, q_raw: pa.Array, q_tokens: np.ndarray, a_tokens: np.ndarray
) -> PoolFields:
    """The seven stratum fields of every row."""
    media, media_labels = column_codes(string_column(table, "media_type", "image"))
    is_video = media == (media_labels.index("video") if "video" in media_labels else -1)
    is_text = media == (media_labels.index("text") if "text" in media_labels else -1)
    frames = float_column(table, "num_frames") if has_column(table, "num_frames") else None
    if frames is None:
        frames = np.where(is_video, 8.0, 1.0)
    frames = np.where(np.isfinite(frames), frames, 1.0)
    dur = np.where(is_video, _bucket(frames, (1, 8, 24, 64, 160)), np.where(is_text, 6, 0))

    def mcq(values: pa.Array) -> np.ndarray:
        return pc.match_substring_regex(values, MCQ_PATTERN).to_numpy(zero_copy_only=False)

    temporal, temporal_source = _temporal_codes(table, is_video, q_raw)
    src, src_labels = column_codes(string_column(table, "source", "unknown"))
    group_of = [source_group(s) for s in src_labels]
    group_labels = sorted(set(group_of))
    group = (
        np.array([group_labels.index(g) for g in group_of], dtype=np.int64)[src]
        if len(src)
        else src
    )
    codes = {
        "modality": media,
        "duration": dur,
        "temporal": temporal,
        "form": mcq(q_raw).astype(np.int64),
        "q_len": _bucket(q_tokens, (6, 14, 30, 60)),
        "a_len": _bucket(a_tokens, (2, 8, 24, 64)),
        "source_group": group,
    }
    labels = {
        "modality": media_labels,
        "duration": list(DURATION),
        "temporal": list(TEMPORAL),
        "form": ["Open", "MCQ"],
        "q_len": list(Q_LEN),
        "a_len": list(A_LEN),
        "source_group": group_labels,
    }
    return PoolFields(codes=codes, labels=labels, temporal_source=temporal_source)


def stratum_codes(fields: PoolFields) -> tuple[np.ndarray, list[str]]:
    """Stratum id per row (ids follow the sorted mixed-radix key) and the stratum labels."""
    key = np.zeros(len(fields.codes["modality"]), dtype=np.int64)
    for name in FIELDS:
        key = key * len(fields.labels[name]) + fields.codes[name]
    uniq, stratum = np.unique(key, return_inverse=True)
    labels = []
    for k in uniq.tolist():
        parts = []
        for name in reversed(FIELDS):
            k, digit = divmod(k, len(fields.labels[name]))
            parts.append(fields.labels[name][digit])
        labels.append("|".join(reversed(parts)))
    return stratum.astype(np.int64), labels


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

"""GDO scores: the merged per-sample quality and the selection score (Wu & Zhao 2026, GDO).

Two formulas from the reference code (rujiewu/GDO):

* merged quality (gdo/merge_metrics.py), with robust z-scores z(x) = (x - median) / (IQR/1.349):
  quality = 0.28 sigmoid(z_vds + z_frame_div) + 0.18 SC + 0.14 exp(-|z_ppl|)
            + 0.12 exp(-|z_motion|) + 0.12 gdo_temporal_label + 0.10 exp(-dist)
            + 0.06 (1 - exp(-dist)),
  SC = stability, or sigmoid(0.6 z_vds - 0.2 |z_ppl|) where stability is missing.
* selection score (gdo/build_pair.py): text heuristics (question / answer length near 14 / 16
  tokens, answer diversity, a length "difficulty" bump at 22 tokens), alignment with the pool's
  field profile, a temporal bonus and a source-rarity prior, squashed by tanh(base/3), plus the
  metric terms VDS3 = -z(loss) + z(loss_blind) + z(frame_div) and z(quality) (mean/std z
  clipped at +-4, divided by 4); videos and images weigh them differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from selection.common import float_column, has_column
from selection.gdo_temporal import LABEL_COLUMN

__all__ = [
    "GDOScoreConfig",
    "alignment_score",
    "difficulty_score",
    "merged_quality",
    "robust_z",
    "selection_score",
    "sigmoid",
    "source_prior",
    "temporal_bonus",
    "text_quality",
]


@dataclass(frozen=True)
class GDOScoreConfig:
    """Weights of GDO's selection score (reference defaults) and the ablation switches."""

    use_vds: bool = True  # False is the "w/o VDS" ablation: no VDS3 term
    use_sc: bool = True  # False is "w/o SC": no merged-quality (self-consistency) term
    use_ppl: bool = True  # False is "w/o PPL": no QA-naturalness (perplexity-like) term
    zscore_cap: float = 4.0  # |z| clip of the metric terms
    vds3_weight: float = 0.95
    video_base_weight: float = 0.35
    video_quality_weight: float = 0.35
    image_base_weight: float = 0.9
    image_quality_weight: float = 0.15
    missing_metrics_penalty: float = 0.15  # videos without loss / loss_blind


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (IQR / 1.349) over the finite values; the IQR is floored at 1e-6."""
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros_like(x)
    q25, q50, q75 = np.quantile(finite, [0.25, 0.5, 0.75])
    scale = max(q75 - q25, 1e-6) / 1.349
    return (x - q50) / max(scale, 1e-6)


def _column_or(table: pa.Table, name: str, default: float) -> tuple[np.ndarray, bool]:
    if not has_column(table, name):
        return np.full(table.num_rows, default), False
    return float_column(table, name), True


def merged_quality(table: pa.Table) -> tuple[np.ndarray, dict]:
    """GDO's merged quality per row, and which inputs were present (for the manifest).

    Missing values are neutral: a null descriptor counts as the pool median (z = 0), a missing
    stability uses the SC fallback, a missing cluster_dist makes the cluster terms constant.
    """
    vds, has_vds = _column_or(table, "vds", 0.0)
    ppl, has_ppl = _column_or(table, "ppl", 0.0)
    motion, has_motion = _column_or(table, "motion", 0.0)
    fdiv, has_fdiv = _column_or(table, "frame_div", 0.0)
    temporal, has_temporal = _column_or(table, LABEL_COLUMN, 0.5)
    dist, has_dist = _column_or(table, "cluster_dist", 0.0)
    stab, has_stab = _column_or(table, "stability", np.nan)
    z = {
        k: np.nan_to_num(robust_z(v))
        for k, v in {"vds": vds, "ppl": ppl, "motion": motion, "fdiv": fdiv}.items()
    }
    sc_fallback = sigmoid(0.6 * z["vds"] - 0.2 * np.abs(z["ppl"]))
    sc = np.where(np.isfinite(stab), stab, sc_fallback)
    rep = np.exp(-np.nan_to_num(dist, nan=0.0))
    quality = (
        0.28 * sigmoid(z["vds"] + z["fdiv"])
        + 0.18 * sc
        + 0.14 * np.exp(-np.abs(z["ppl"]))
        + 0.12 * np.exp(-np.abs(z["motion"]))
        + 0.12 * np.nan_to_num(temporal, nan=0.5)
        + 0.10 * rep
        + 0.06 * (1.0 - rep)
    )
    info = {
        "present": {
            "vds": has_vds,
            "ppl": has_ppl,
            "motion": has_motion,
            "frame_div": has_fdiv,
            LABEL_COLUMN: has_temporal,
            "cluster_dist": has_dist,
            "stability": has_stab,
        },
        "sc_fallback_rows": int((~np.isfinite(stab)).sum()),
    }
    return quality, info


def text_quality(q_tokens: np.ndarray, a_tokens: np.ndarray, a_distinct: np.ndarray) -> np.ndarray:
    """QA naturalness: -|ln q - ln 14| - 1.25 |ln a - ln 16| - 1.2 max(0, 0.55 - distinct/a)."""
    qn = np.maximum(1, q_tokens).astype(np.float64)
    an = np.maximum(1, a_tokens).astype(np.float64)
    repeat_pen = np.maximum(0.0, 0.55 - a_distinct / an)
    return (
        -np.abs(np.log(qn) - np.log(14.0))
        - 1.25 * np.abs(np.log(an) - np.log(16.0))
        - 1.2 * repeat_pen
    )


def difficulty_score(q_tokens: np.ndarray, a_tokens: np.ndarray) -> np.ndarray:
    """exp(-z^2 / (2 * 0.85^2)) with z = |ln max(1, q + a/2) - ln 22|."""
    x = np.maximum(1.0, q_tokens + 0.5 * a_tokens)
    z = np.abs(np.log(x) - np.log(22.0))
    return np.exp(-z * z / (2.0 * 0.85 * 0.85))


def alignment_score(field_codes: list[np.ndarray]) -> np.ndarray:
    """Mean over the fields of ln(pool frequency of this row's value), floored at 1e-9."""
    total = np.zeros(len(field_codes[0]), dtype=np.float64)
    for codes in field_codes:
        freq = np.bincount(codes) / float(len(codes))
        total += np.log(np.maximum(freq[codes], 1e-9))
    return total / len(field_codes)


def temporal_bonus(category: np.ndarray) -> np.ndarray:
    """+1 for "Temporal", +0.2 for "Mixed", -0.5 otherwise (videos only). Takes the labels or
    the codes 2 / 1 / 0 of gdo_strata.TEMPORAL."""
    temporal = (category == "Temporal") | (category == 2)
    mixed = (category == "Mixed") | (category == 1)
    return np.where(temporal, 1.0, np.where(mixed, 0.2, -0.5))


def source_prior(source_codes: np.ndarray) -> np.ndarray:
    """ln((N + 1) / (count of this row's source + 1)): rarer sources score higher."""
    counts = np.bincount(source_codes)
    n = len(source_codes)
    return np.log((n + 1.0) / (counts[source_codes] + 1.0))


def _mean_std_z(x: np.ndarray, valid: np.ndarray, cap: float) -> np.ndarray:
    """Reference z for the metric terms: mean / sample std over rows with metrics, clipped."""
    vals = x[valid & np.isfinite(x)]
    if vals.size == 0:
        return np.zeros_like(x)
    mean = vals.mean()
    var = vals.var(ddof=1) if vals.size > 1 else 0.0
    std = float(np.sqrt(var)) if var > 1e-12 else 1.0
    return np.clip(np.nan_to_num((x - mean) / std), -cap, cap)


def metric_terms(
    table: pa.Table, quality: np.ndarray, cap: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(has_metrics, VDS3, z_quality): VDS3 = -z(loss) + z(loss_blind) + z(frame_div).

    Falls back like the reference: z(vds) + 0.5 z(frame_div), or z(vds) alone.
    """
    n = table.num_rows
    loss = float_column(table, "loss") if has_column(table, "loss") else np.full(n, np.nan)
    blind = (
        float_column(table, "loss_blind") if has_column(table, "loss_blind") else np.full(n, np.nan)
    )
    vds = float_column(table, "vds") if has_column(table, "vds") else blind - loss
    fdiv = (
        float_column(table, "frame_div") if has_column(table, "frame_div") else np.full(n, np.nan)
    )
    has = np.isfinite(loss) & np.isfinite(blind) | np.isfinite(vds)
    z_fd = _mean_std_z(fdiv, has, cap)
    full = np.isfinite(loss) & np.isfinite(blind) & np.isfinite(fdiv)
    vds3 = np.where(
        full,
        -_mean_std_z(loss, has, cap) + _mean_std_z(blind, has, cap) + z_fd,
        np.where(
            np.isfinite(fdiv), _mean_std_z(vds, has, cap) + 0.5 * z_fd, _mean_std_z(vds, has, cap)
        ),
    )
    vds3 = np.where(has, vds3, 0.0)
    z_quality = np.where(has, _mean_std_z(quality, has, cap), 0.0)
    return has, vds3, z_quality


def selection_score(
    base_terms: dict[str, np.ndarray],
    is_video: np.ndarray,
    has_metrics: np.ndarray,
    vds3: np.ndarray,
    z_quality: np.ndarray,
    config: GDOScoreConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(final score, heuristic base) per row from the precomputed terms.

    base_terms holds text_quality, difficulty, alignment, temporal_bonus, source_prior.
    video: base = ppl + 0.85 diff + 0.9 align + 0.55 temporal + 0.15 prior;
    image: base = 1.1 ppl + 0.85 diff + 0.9 align + 0.15 prior.
    """
    ppl_term = base_terms["text_quality"] if config.use_ppl else 0.0
    common = 0.85 * base_terms["difficulty"] + 0.9 * base_terms["alignment"]
    common = common + 0.15 * base_terms["source_prior"]
    base = np.where(
        is_video,
        1.0 * ppl_term + common + 0.55 * base_terms["temporal_bonus"],
        1.1 * ppl_term + common,
    )
    cap = max(config.zscore_cap, 1e-6)
    base_norm = np.tanh(base / 3.0)
    vds3_norm = np.clip(vds3, -config.zscore_cap, config.zscore_cap) / cap
    q_norm = np.clip(z_quality, -config.zscore_cap, config.zscore_cap) / cap
    video = config.video_base_weight * base_norm
    video_metrics = (config.vds3_weight * vds3_norm if config.use_vds else 0.0) + (
        config.video_quality_weight * q_norm if config.use_sc else 0.0
    )
    video = video + np.where(has_metrics, video_metrics, -max(0.0, config.missing_metrics_penalty))
    image = config.image_base_weight * base_norm
    if config.use_sc:
        image = image + np.where(has_metrics, config.image_quality_weight * q_norm, 0.0)
    return np.where(is_video, video, image), base

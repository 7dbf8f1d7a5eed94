"""GDO selection: presets MinLoss / Diverse / Temp / Temp+, the uniform control and Uni-10x.

Goal-Driven Data Optimization (Wu & Zhao 2026; reference rujiewu/GDO gdo/build_pair.py and
configs/*.env). Rows are scored (selection_score), grouped into strata, and each stratum keeps
its top `quota x oversampling` candidates. Then, in this order, until the budget is met:
temporal-video minimum, video minimum, source-group floors (capped at 70% of the budget),
stratum quotas, global fill by score, random fill. Every take respects the dedup rules (one row
per q|||a text), at most 8 QAs per video and the video share maximum.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import pyarrow as pa

from selection.common import (
    MissingColumnsError,
    Subset,
    answer_text,
    column_codes,
    distinct_token_counts,
    eligible_mask,
    question_answer,
    resolve_budget,
    string_column,
    text_codes,
    token_counts,
)
from selection.gdo_greedy import Greedy
from selection.gdo_score import (
    GDOScoreConfig,
    alignment_score,
    difficulty_score,
    merged_quality,
    metric_terms,
    selection_score,
    source_prior,
    temporal_bonus,
    text_quality,
)
from selection.gdo_strata import (
    TEMPORAL,
    largest_remainder,
    pool_fields,
    recommend_budget,
    stratum_codes,
)
from selection.gdo_temporal import LABEL_COLUMN, TemporalRule, gdo_temporal_label
from selection.gdo_temporal import SOURCE_COLUMNS as TEMPORAL_SOURCES

__all__ = [
    "GDOConfig",
    "PRESETS",
    "REFERENCE_POOL_ROWS",
    "UniformConfig",
    "gdo_select",
    "uniform_select",
]

# The preset counts (min / max count, VDS3 positives) are the reference's values for a pool of
# about this many QA rows; they scale linearly with the pool.
REFERENCE_POOL_ROWS = 1_000_000
TEMPORAL_CATEGORIES = ("Temporal", "Mixed")
GDO_COLUMNS = {
    "source",
    "media_type",
    "video_id",
    "num_frames",
    "vds",
    "ppl",
    "motion",
    "frame_div",
    "temporal_prompted",
    "temporal_loss_gap",
    "cluster_dist",
    "stability",
    "loss",
    "loss_blind",
}
TEMPORAL_CODES = [TEMPORAL.index(c) for c in TEMPORAL_CATEGORIES]
# What GDO's score reads from the score stage (stability and cluster_dist have GDO's own
# fallbacks: the SC formula and constant coverage terms), plus one temporal source.
REQUIRED_DESCRIPTORS = ("loss", "loss_blind", "vds", "ppl", "motion", "frame_div")


def check_descriptors(table: pa.Table, allow_missing: bool) -> list[str]:
    """The GDO descriptor columns the pool lacks; an error naming them unless allowed."""
    missing = [c for c in REQUIRED_DESCRIPTORS if c not in table.column_names]
    if not any(c in table.column_names for c in TEMPORAL_SOURCES):
        missing.append(" or ".join(TEMPORAL_SOURCES))
    if missing and not allow_missing:
        raise MissingColumnsError(
            f"GDO needs descriptor columns {missing} that the pool does not have (run the "
            "score stage with the model descriptors, or allow the neutral fallback: "
            "--allow-missing-descriptors)"
        )
    return missing


@dataclass(frozen=True)
class GDOConfig:
    """One GDO preset. Field values of the named presets are the reference's configs/*.env."""

    name: str = "custom"
    min_count: int = 15000  # auto budget lower bound (rows, at REFERENCE_POOL_ROWS)
    max_count: int = 120000  # auto budget upper bound (rows, at REFERENCE_POOL_ROWS)
    min_ratio: float = 0.001  # auto budget lower bound as a share of the pool
    max_ratio: float = 0.020  # auto budget upper bound as a share of the pool
    strata_mult: float = 24.0  # rows per effective stratum (e^entropy)
    coverage_mass: float = 0.95  # strata covering this mass set the tail stratum
    tail_target: float = 12.0  # rows wanted from that tail stratum
    vds3_target_positive: int = 8000  # VDS3>threshold rows the budget should hold (scaled)
    vds3_threshold: float = 0.0
    vds3_max_mult: float = 3.0  # the VDS3 adjustment grows the budget at most this much
    min_video_ratio: float = 0.40
    max_video_ratio: float = 0.55
    min_temporal_in_video_ratio: float = 0.25
    oversample: float = 1.35  # candidates kept per stratum = quota x this
    video_oversample: float = 2.4
    temporal_oversample: float = 3.5
    source_floor_topk: int = 16  # floors for the k largest source groups
    min_source_group_ratio: float = 0.0020
    source_floor_frac_of_expected: float = 0.35
    max_qa_per_video: int = 8
    score: GDOScoreConfig = GDOScoreConfig()
    temporal: TemporalRule = TemporalRule()  # loss gap -> GDO's temporal label
    # Missing descriptor columns stop the selection (MissingColumnsError naming them) unless
    # this is on: then they count as neutral and the report lists them under `fallbacks`.
    allow_missing_descriptors: bool = False
    budget: float | None = None  # a count (>= 1) or a pool fraction; overrides the budget rule
    drop_duplicates: bool = True  # drop rows with dup_keep == false before anything else


PRESETS = {
    "minloss": GDOConfig(
        name="minloss",
        min_count=12000,
        max_count=72000,
        max_ratio=0.014,
        strata_mult=16.0,
        coverage_mass=0.93,
        tail_target=3.5,
        vds3_target_positive=2600,
        vds3_max_mult=1.6,
        min_video_ratio=0.15,
        max_video_ratio=0.32,
        min_temporal_in_video_ratio=0.05,
        oversample=1.15,
        video_oversample=1.45,
        temporal_oversample=1.55,
        source_floor_topk=14,
        min_source_group_ratio=0.0015,
        source_floor_frac_of_expected=0.33,
    ),
    "diverse": GDOConfig(
        name="diverse",
        min_count=14000,
        max_count=95000,
        max_ratio=0.016,
        strata_mult=26.0,
        coverage_mass=0.97,
        tail_target=8.0,
        vds3_target_positive=5000,
        vds3_max_mult=2.4,
        min_video_ratio=0.25,
        max_video_ratio=0.45,
        min_temporal_in_video_ratio=0.15,
        oversample=1.28,
        video_oversample=1.9,
        temporal_oversample=2.2,
        source_floor_topk=28,
        min_source_group_ratio=0.0030,
        source_floor_frac_of_expected=0.45,
    ),
    "temp": GDOConfig(
        name="temp",
        min_count=15000,
        max_count=90000,
        max_ratio=0.016,
        strata_mult=20.0,
        coverage_mass=0.95,
        tail_target=10.0,
        vds3_target_positive=6500,
        vds3_max_mult=2.4,
        min_video_ratio=0.35,
        max_video_ratio=0.50,
        min_temporal_in_video_ratio=0.20,
        oversample=1.30,
        video_oversample=2.2,
        temporal_oversample=3.0,
        source_floor_topk=18,
        min_source_group_ratio=0.0022,
        source_floor_frac_of_expected=0.38,
    ),
    "temp+": GDOConfig(
        name="temp+",
        min_count=16000,
        max_count=110000,
        max_ratio=0.018,
        strata_mult=22.0,
        coverage_mass=0.95,
        tail_target=16.0,
        vds3_target_positive=9000,
        vds3_max_mult=3.2,
        min_video_ratio=0.50,
        max_video_ratio=0.64,
        min_temporal_in_video_ratio=0.38,
        oversample=1.35,
        video_oversample=2.9,
        temporal_oversample=4.2,
        source_floor_topk=16,
        min_source_group_ratio=0.0025,
        source_floor_frac_of_expected=0.38,
    ),
}


@dataclass(frozen=True)
class UniformConfig:
    """GDO's uniform control: a seeded random subset with the same dedup and per-video cap.

    multiplier 10 is Uni-10x. Without a budget, the size is the preset's budget rule.
    """

    preset: GDOConfig = PRESETS["temp+"]
    multiplier: float = 1.0
    budget: float | None = None
    max_qa_per_video: int = 8
    drop_duplicates: bool = True


@dataclass
class _Pool:
    """The eligible rows and everything GDO derives from them (arrays index `rows`)."""

    rows: np.ndarray
    text: np.ndarray
    video: np.ndarray  # video code, -1 for non-video rows or rows without a video id
    is_video: np.ndarray
    temporal: np.ndarray  # video row whose temporal category counts as temporal
    stratum: np.ndarray
    stratum_labels: list[str]
    group: np.ndarray
    group_labels: list[str]
    score: np.ndarray
    vds3: np.ndarray
    has_metrics: np.ndarray
    report: dict


def _prepare(table: pa.Table, config: GDOConfig, scored: bool = True) -> _Pool:
    """Everything GDO derives from the eligible rows. `scored=False` (the uniform control)
    skips the selection score and keeps only what the budget rule and the takes need."""
    missing = check_descriptors(table, config.allow_missing_descriptors) if scored else []
    mask, report = eligible_mask(table, config.drop_duplicates)
    if missing:
        report["fallbacks"] = missing
    rows = np.flatnonzero(mask)
    # Messages stay in `table`: taking the eligible rows of that list column costs seconds.
    sub = table.select([c for c in table.column_names if c in GDO_COLUMNS]).take(pa.array(rows))
    label, label_counts = gdo_temporal_label(sub, config.temporal)
    sub = sub.append_column(LABEL_COLUMN, pa.array(label))
    report.update(temporal_label=label_counts)
    answers = answer_text(table, rows)
    q, _, q_raw = question_answer(table, rows, answers, materialize_answers=False)
    q_tok, a_tok = token_counts(q), answers.per_row(token_counts)
    fields = pool_fields(sub, q_raw, q_tok, a_tok)
    stratum, labels = stratum_codes(fields)
    is_video = fields.is_video()
    if scored:
        quality, qinfo = merged_quality(sub)
        report.update(quality=qinfo)
    else:
        quality = np.zeros(len(rows))
    has, vds3, zq = metric_terms(sub, quality, config.score.zscore_cap)
    score = _score(sub, fields, answers, q_tok, a_tok, (has, vds3, zq), config) if scored else vds3
    video_ids = sub.column("video_id").combine_chunks() if "video_id" in sub.column_names else None
    video = _video_codes(video_ids, is_video)
    report.update(temporal_from=fields.temporal_source, strata=len(labels))
    return _Pool(
        rows=rows,
        text=text_codes(q, answers),
        video=video,
        is_video=is_video,
        temporal=is_video & np.isin(fields.codes["temporal"], TEMPORAL_CODES),
        stratum=stratum,
        stratum_labels=labels,
        group=fields.codes["source_group"],
        group_labels=fields.labels["source_group"],
        score=score,
        vds3=vds3,
        has_metrics=has,
        report=report,
    )


def _score(sub, fields, answers, q_tok, a_tok, metrics, config: GDOConfig) -> np.ndarray:
    """GDO's selection score from the text heuristics, profile terms and metric terms."""
    terms = {
        "text_quality": text_quality(q_tok, a_tok, answers.per_row(distinct_token_counts)),
        "difficulty": difficulty_score(q_tok, a_tok),
        "alignment": alignment_score([fields.codes[f] for f in fields.codes if f != "modality"]),
        "temporal_bonus": temporal_bonus(fields.codes["temporal"]),
        "source_prior": source_prior(column_codes(string_column(sub, "source", "unknown"))[0]),
    }
    has, vds3, zq = metrics
    score, _ = selection_score(terms, fields.is_video(), has, vds3, zq, config.score)
    return score


def _video_codes(video_ids: pa.Array | None, is_video: np.ndarray) -> np.ndarray:
    if video_ids is None:
        return np.full(len(is_video), -1, dtype=np.int64)
    codes, labels = column_codes(video_ids.fill_null(""))
    empty = labels.index("") if "" in labels else -2
    return np.where(is_video & (codes != empty), codes, -1)


def _scaled(count: int, total: int) -> int:
    return max(1, int(math.ceil(count * total / REFERENCE_POOL_ROWS)))


def _budget(pool: _Pool, config: GDOConfig) -> tuple[int, dict]:
    """Explicit budget, else the preset's rule plus its VDS3 adjustment."""
    total = len(pool.rows)
    fixed = resolve_budget(config.budget, total)
    if fixed is not None:
        return fixed, {"mode": "fixed", "requested": config.budget, "count": fixed}
    rule = asdict(config)
    rule.update(
        min_count=_scaled(config.min_count, total), max_count=_scaled(config.max_count, total)
    )
    n, info = recommend_budget(np.bincount(pool.stratum), total, rule)
    pos = (
        float((pool.vds3[pool.has_metrics] > config.vds3_threshold).mean())
        if pool.has_metrics.any()
        else 0.0
    )
    if pos > 0:
        want = int(math.ceil(_scaled(config.vds3_target_positive, total) / pos))
        high = int(math.floor(total * config.max_ratio)) or total
        cap = min(
            total, rule["max_count"], int(math.ceil(n * max(1.0, config.vds3_max_mult))), high
        )
        adjusted = max(1, min(max(n, want), cap, total))
        info["vds3_adjustment"] = {
            "positive_ratio": pos,
            "n_from_vds3": want,
            "cap": cap,
            "adjusted": adjusted,
        }
        n = adjusted
    info.update(scaled_min_count=rule["min_count"], scaled_max_count=rule["max_count"], count=n)
    return n, info


def _candidates(pool: _Pool, quotas: np.ndarray, config: GDOConfig, tie: np.ndarray) -> np.ndarray:
    """Per stratum, the top max(q, ceil(q x oversampling)) rows by (score, tie)."""
    n_strata = len(quotas)
    video_s = np.zeros(n_strata, dtype=bool)
    temporal_s = np.zeros(n_strata, dtype=bool)
    video_s[pool.stratum[pool.is_video]] = True
    temporal_s[pool.stratum[pool.temporal]] = True
    mult = np.full(n_strata, max(config.oversample, 1.0))
    mult = np.where(video_s, np.maximum(mult, config.video_oversample), mult)
    mult = np.where(temporal_s, np.maximum(mult, config.temporal_oversample), mult)
    caps = np.where(
        quotas > 0, np.maximum(quotas, np.ceil(quotas * mult - 1e-9).astype(np.int64)), 0
    )
    order = np.lexsort((-tie, -pool.score, pool.stratum))
    starts = np.searchsorted(pool.stratum[order], np.arange(n_strata))
    rank = np.arange(len(order)) - starts[pool.stratum[order]]
    keep = order[rank < caps[pool.stratum[order]]]
    return keep[np.lexsort((-tie[keep], -pool.score[keep]))]


def _floors(pool: _Pool, target: int, config: GDOConfig) -> dict[int, int]:
    """Source-group floors: max(ceil(budget x min ratio), ceil(frac x expected)) for the top-k
    groups where that is no more than the expected count; all floors together <= 70% budget."""
    if config.source_floor_topk <= 0 or config.min_source_group_ratio <= 0 or target <= 0:
        return {}
    counts = np.bincount(pool.group)
    order = np.lexsort((np.arange(len(counts)), -counts))[: config.source_floor_topk]
    floor_abs = max(1, int(math.ceil(target * config.min_source_group_ratio)))
    req = {}
    for g in order:
        expected = target * counts[g] / float(len(pool.rows))
        need = max(floor_abs, int(math.ceil(config.source_floor_frac_of_expected * expected)))
        if counts[g] > 0 and need <= int(math.floor(expected)):
            req[int(g)] = need
    max_total = int(math.floor(target * 0.7))
    if max_total <= 0:
        return {}
    total = sum(req.values())
    if total > max_total:
        req = {g: max(1, int(math.floor(v * max_total / total))) for g, v in req.items()}
    return req


def gdo_select(table: pa.Table, config: GDOConfig = PRESETS["temp+"], seed: int = 0) -> Subset:
    """Select a GDO subset; rows come back in selection order with the report of every stage."""
    pool = _prepare(table, config)
    target, budget_info = _budget(pool, config)
    tie = np.random.default_rng(seed).random(len(pool.rows))
    quotas = largest_remainder(np.bincount(pool.stratum), target)
    video_quota = int(
        largest_remainder(np.array([(~pool.is_video).sum(), pool.is_video.sum()]), target)[1]
    )
    min_video = int(math.ceil(config.min_video_ratio * target))
    max_video = max(min_video, min(int(math.floor(config.max_video_ratio * target)), target))
    min_temporal = int(math.ceil(config.min_temporal_in_video_ratio * max(min_video, video_quota)))
    cand = _candidates(pool, quotas, config, tie)
    greedy = Greedy(pool, target, max_video, config.max_qa_per_video)
    greedy.fill(cand[pool.temporal[cand]], min_temporal, "hard_temporal_video")
    greedy.fill(cand[pool.is_video[cand]], min_video - greedy.video_taken, "hard_video")
    floors = _floors(pool, target, config)
    for g, need in floors.items():
        greedy.fill(
            cand[pool.group[cand] == g],
            need - greedy.group_count(g),
            f"source_floor::{pool.group_labels[g]}",
        )
    greedy.fill_quotas(cand, quotas)
    greedy.fill(cand, target - greedy.size, "global_fill")
    greedy.fill(
        np.random.default_rng(seed + 1).permutation(len(pool.rows)),
        target - greedy.size,
        "random_fill",
    )
    picked = greedy.picked()
    report = dict(
        pool.report,
        method="gdo",
        preset=config.name,
        budget=budget_info,
        constraints={
            "min_temporal_video": min_temporal,
            "min_video": min_video,
            "max_video": max_video,
            "video_quota": video_quota,
            "source_floors": {pool.group_labels[g]: v for g, v in floors.items()},
            "candidates": int(len(cand)),
            **greedy.report(),
        },
    )
    report["strata_selected"] = greedy.strata_report(pool.stratum_labels, quotas)
    return Subset(
        rows=pool.rows[picked], stage=np.full(len(picked), "all", dtype=object), report=report
    )


def uniform_select(
    table: pa.Table, config: UniformConfig = UniformConfig(), seed: int = 0
) -> Subset:
    """GDO's uniform control (x multiplier, 10 is Uni-10x): a seeded shuffle taken in order with
    one row per q|||a and at most max_qa_per_video per video; text duplicates then fill if short."""
    preset = replace(config.preset, budget=config.budget, drop_duplicates=config.drop_duplicates)
    pool = _prepare(table, preset, scored=False)
    base, budget_info = _budget(pool, preset)
    target = min(len(pool.rows), max(1, int(math.ceil(base * config.multiplier))))
    order = np.random.default_rng(seed).permutation(len(pool.rows))
    greedy = Greedy(pool, target, target, config.max_qa_per_video)
    greedy.fill(order, target, "uniform")
    greedy.dedup_text = False
    greedy.fill(order, target - greedy.size, "uniform_text_dups")
    greedy.max_per_video = 1 << 62
    greedy.fill(order, target - greedy.size, "uniform_any")
    picked = greedy.picked()
    report = dict(
        pool.report,
        method="uniform",
        preset=preset.name,
        multiplier=config.multiplier,
        budget=dict(budget_info, base=base, count=target),
        constraints=greedy.report(),
    )
    return Subset(
        rows=pool.rows[picked], stage=np.full(len(picked), "all", dtype=object), report=report
    )

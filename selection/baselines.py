"""Controls and single-score methods: random, full, uniform per category, OST top-k, and the
PISM / CMAB difficulty strata with the hierarchical SFT -> GRPO plan.

OST (One-Step-Train, arXiv 2605.07488): keep the top k% by `ost_utility`; the bottom of the
same ranking is reported as "flagged harmful". PISM / CMAB (Qi et al., AAAI 2026;
qijianyu277/DifficultySampling): easy / medium / hard / unsolved from `pism_label` /
`cmab_label`, or from `pism_lambda` / `cmab_ratio` with the paper's thresholds; the plan trains
SFT on easy + medium, then GRPO on medium + hard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from selection.common import (
    Subset,
    column_codes,
    eligible_mask,
    float_column,
    has_column,
    require_columns,
    resolve_budget,
    string_column,
)

__all__ = [
    "DifficultyConfig",
    "LEVELS",
    "OSTConfig",
    "SimpleConfig",
    "cmab_levels",
    "difficulty_levels",
    "difficulty_select",
    "full_select",
    "ost_select",
    "per_category_select",
    "pism_levels",
    "random_select",
]

LEVELS = ("easy", "medium", "hard", "unsolved")


@dataclass(frozen=True)
class SimpleConfig:
    """Random and per-category baselines: the budget (count or pool fraction)."""

    budget: float = 0.3
    drop_duplicates: bool = True


@dataclass(frozen=True)
class OSTConfig:
    """OST top-k: keep the `budget` best by one-step utility; flag the `harmful` worst."""

    budget: float = 0.3
    harmful: float = 0.05  # fraction (or count) of the pool reported as flagged harmful
    drop_duplicates: bool = True


@dataclass(frozen=True)
class DifficultyConfig:
    """PISM / CMAB strata. `levels` picks a subset; `plan` builds SFT -> GRPO stages instead."""

    signal: str = "pism"  # "pism" or "cmab"
    levels: tuple[str, ...] = ("medium", "hard")
    plan: bool = True  # stages sft (sft_levels) then grpo (grpo_levels); ignores `levels`
    sft_levels: tuple[str, ...] = ("easy", "medium")
    grpo_levels: tuple[str, ...] = ("medium", "hard")
    budget: float | None = None  # per level set, a count or fraction of it; None keeps all
    drop_duplicates: bool = True


def _seeded_perm(rows: np.ndarray, seed: int) -> np.ndarray:
    return rows[np.random.default_rng(seed).permutation(len(rows))]


def _one_stage(rows: np.ndarray, report: dict, stage: str = "all") -> Subset:
    return Subset(rows=rows, stage=np.full(len(rows), stage, dtype=object), report=report)


def random_select(table: pa.Table, config: SimpleConfig = SimpleConfig(), seed: int = 0) -> Subset:
    """A seeded uniform sample of `budget` eligible rows."""
    mask, report = eligible_mask(table, config.drop_duplicates)
    rows = np.flatnonzero(mask)
    n = resolve_budget(config.budget, len(rows))
    report.update(method="random", budget={"requested": config.budget, "count": n})
    return _one_stage(_seeded_perm(rows, seed)[:n], report)


def full_select(table: pa.Table, config: SimpleConfig = SimpleConfig(), seed: int = 0) -> Subset:
    """Every eligible row, in pool order (the 'full pool' control)."""
    mask, report = eligible_mask(table, config.drop_duplicates)
    rows = np.flatnonzero(mask)
    report.update(method="full", budget={"count": int(len(rows))})
    return _one_stage(rows, report)


def _equal_shares(sizes: np.ndarray, n: int) -> np.ndarray:
    """Water-filling: equal counts per group, capped by group size, leftovers to the others
    (the extra units of an uneven split go to the groups holding least, then lowest index)."""
    take = np.zeros(len(sizes), dtype=np.int64)
    left = n
    while left > 0:
        open_ = np.flatnonzero(take < sizes)
        if len(open_) == 0:
            break
        share, extra = divmod(left, len(open_))
        add = np.full(len(open_), share)
        add[np.lexsort((open_, take[open_]))[:extra]] += 1
        add = np.minimum(add, sizes[open_] - take[open_])
        take[open_] += add
        left -= int(add.sum())
    return take


def per_category_select(
    table: pa.Table, config: SimpleConfig = SimpleConfig(), seed: int = 0
) -> Subset:
    """Uniform per category: the budget split equally over categories, random within each."""
    require_columns(table, ["category"], "uniform-per-category")
    mask, report = eligible_mask(table, config.drop_duplicates)
    rows = np.flatnonzero(mask)
    n = resolve_budget(config.budget, len(rows))
    all_codes, names = column_codes(string_column(table, "category", "unknown"))
    codes = all_codes[rows]
    take = _equal_shares(np.bincount(codes, minlength=len(names)), n)
    rng = np.random.default_rng(seed)
    parts = [rng.permutation(rows[codes == k])[: take[k]] for k in range(len(names))]
    out = _seeded_perm(np.concatenate(parts) if parts else rows[:0], seed + 1)
    report.update(
        method="per_category",
        budget={"requested": config.budget, "count": n},
        per_category={str(k): int(v) for k, v in zip(names, take, strict=True)},
    )
    return _one_stage(out, report)


def ost_select(table: pa.Table, config: OSTConfig = OSTConfig(), seed: int = 0) -> Subset:
    """Top `budget` rows by ost_utility (ties by a seeded permutation); the `harmful` lowest
    utilities come back in `flagged`. Rows without a utility are never selected or flagged."""
    require_columns(table, ["ost_utility"], "OST")
    mask, report = eligible_mask(table, config.drop_duplicates)
    util = float_column(table, "ost_utility")
    rows = np.flatnonzero(mask & np.isfinite(util))
    tie = np.random.default_rng(seed).random(len(rows))
    order = rows[np.lexsort((tie, -util[rows]))]
    n = resolve_budget(config.budget, int(mask.sum()))
    k = resolve_budget(config.harmful, int(mask.sum())) if config.harmful else 0
    selected, flagged = order[:n], order[::-1][:k]
    report.update(
        method="ost",
        budget={"requested": config.budget, "count": int(len(selected))},
        no_utility=int(mask.sum() - len(rows)),
        flagged_harmful=int(len(flagged)),
        utility_cut=float(util[selected[-1]]) if len(selected) else None,
        harmful_cut=float(util[flagged[-1]]) if len(flagged) else None,
    )
    sub = _one_stage(selected, report)
    sub.flagged = flagged
    return sub


def pism_levels(lam: np.ndarray) -> np.ndarray:
    """PISM: lambda* = first mask ratio where accuracy < tau. 0 (wrong unmasked) unsolved,
    <= 0.4 hard, (0.4, 0.7) medium, >= 0.7 easy (never failing is encoded >= 0.7, e.g. 1.0)."""
    lvl = np.where(lam <= 0.4 + 1e-9, "hard", np.where(lam < 0.7 - 1e-9, "medium", "easy"))
    lvl = np.where(lam <= 1e-9, "unsolved", lvl).astype(object)
    return np.where(np.isfinite(lam), lvl, None)


def cmab_levels(ratio: np.ndarray) -> np.ndarray:
    """CMAB attention ratio: hard in [0.4, 1.6], medium in [0.1, 0.4) or (1.6, 1.9], else easy."""
    hard = (ratio >= 0.4) & (ratio <= 1.6)
    medium = ((ratio >= 0.1) & (ratio < 0.4)) | ((ratio > 1.6) & (ratio <= 1.9))
    lvl = np.where(hard, "hard", np.where(medium, "medium", "easy")).astype(object)
    return np.where(np.isfinite(ratio), lvl, None)


def difficulty_levels(table: pa.Table, signal: str) -> tuple[np.ndarray, str]:
    """The level per row (None when unknown) and where it came from."""
    label, value, fn = {
        "pism": ("pism_label", "pism_lambda", pism_levels),
        "cmab": ("cmab_label", "cmab_ratio", cmab_levels),
    }[signal]
    if has_column(table, label):
        codes, names = column_codes(pc.utf8_lower(string_column(table, label, "")))
        lv = np.array([n if n in LEVELS else None for n in names], dtype=object)[codes]
        if has_column(table, value):
            derived = fn(float_column(table, value))
            lv = np.where(lv == None, derived, lv)  # noqa: E711 (object array compare)
        return lv, label
    require_columns(table, [value], f"{signal} difficulty (or column {label})")
    return fn(float_column(table, value)), f"{value} thresholds"


def _level_rows(levels: np.ndarray, mask: np.ndarray, wanted, budget, seed: int) -> np.ndarray:
    rows = np.flatnonzero(mask & np.isin(levels, list(wanted)))
    rows = _seeded_perm(rows, seed)
    n = resolve_budget(budget, len(rows))
    return rows if n is None else rows[:n]


def difficulty_select(
    table: pa.Table, config: DifficultyConfig = DifficultyConfig(), seed: int = 0
) -> Subset:
    """PISM / CMAB subsets: chosen levels, or the plan (sft stage then grpo stage; rows of a
    level in both, medium by default, appear in both stages)."""
    bad = set(config.levels + config.sft_levels + config.grpo_levels) - set(LEVELS)
    if bad:
        raise ValueError(f"unknown difficulty levels {sorted(bad)}; use {LEVELS}")
    mask, report = eligible_mask(table, config.drop_duplicates)
    levels, source = difficulty_levels(table, config.signal)
    counts = {lv: int((mask & (levels == lv)).sum()) for lv in LEVELS}
    counts["unknown"] = int((mask & (levels == None)).sum())  # noqa: E711
    report.update(method=config.signal, levels_from=source, level_counts=counts)
    if not config.plan:
        rows = _level_rows(levels, mask, config.levels, config.budget, seed)
        report.update(
            levels=list(config.levels), budget={"requested": config.budget, "count": int(len(rows))}
        )
        return _one_stage(rows, report, "+".join(config.levels))
    sft = _level_rows(levels, mask, config.sft_levels, config.budget, seed)
    grpo = _level_rows(levels, mask, config.grpo_levels, config.budget, seed + 1)
    stage = np.array(["sft"] * len(sft) + ["grpo"] * len(grpo), dtype=object)
    report.update(
        plan={
            "sft": {"levels": list(config.sft_levels), "count": int(len(sft))},
            "grpo": {"levels": list(config.grpo_levels), "count": int(len(grpo))},
        }
    )
    return Subset(rows=np.concatenate([sft, grpo]), stage=stage, report=report)

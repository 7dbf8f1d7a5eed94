"""Data orderings of a selected subset (arXiv 2603.27744): direct mixing, curriculum, balanced
sampling, reverse curriculum.

An ordering maps the subset's rows to a stream with a stage label per position; it is part of
the subset (the manifest records it). Every ordering except balanced-with-replacement is a
permutation of the subset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from selection.common import Subset, column_codes, float_column, require_columns, string_column

__all__ = ["ORDERS", "OrderConfig", "apply_order"]

ORDERS = ("none", "mixing", "curriculum", "reverse_curriculum", "balanced")


@dataclass(frozen=True)
class OrderConfig:
    """How to order a subset.

    curriculum: stages in `stages` order (rows of other categories form a last stage
    "other"), shuffled within a stage; or, with `by` set to a numeric column, ascending by it in
    `n_stages` equal-count stages. reverse_curriculum runs the same stages backwards. balanced
    interleaves categories so every window of k rows (k = categories) holds one of each while
    all last; `with_replacement` re-draws from exhausted categories until the largest is done.
    """

    order: str = "mixing"
    stages: tuple[str, ...] = ("general", "chart", "ocr")
    by: str | None = (
        None  # a difficulty column, ascending (e.g. ppl, loss, pism_lambda desc: use -)
    )
    n_stages: int = 3
    with_replacement: bool = False


def _mixing(rows, rng) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return rng.permutation(rows), np.zeros(len(rows), dtype=np.int64), ["mix"]


def _categories(table: pa.Table, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    require_columns(table, ["category"], "this ordering")
    codes, names = column_codes(string_column(table, "category", "unknown"))
    return codes[rows], names


def _curriculum(table, rows, config, rng) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows, stage index per row (ascending), stage names."""
    if config.by:
        col = config.by.lstrip("-")
        require_columns(table, [col], "curriculum by column")
        key = float_column(table, col)[rows] * (-1.0 if config.by.startswith("-") else 1.0)
        key = np.where(np.isfinite(key), key, np.inf)  # unknown difficulty goes last
        order = rows[np.lexsort((rng.random(len(rows)), key))]
        n = max(1, config.n_stages)
        stage_idx = (np.arange(len(order)) * n) // max(len(order), 1)
        return order, stage_idx, [f"{col}_{i + 1}of{n}" for i in range(n)]
    codes, names = _categories(table, rows)
    stages = [*config.stages, "other"]
    last = len(config.stages)
    rank_of = np.array([stages.index(c) if c in config.stages else last for c in names], np.int64)
    rank = rank_of[codes] if len(names) else codes
    order = np.lexsort((rng.random(len(rows)), rank))
    return rows[order], rank[order], stages


def _balanced(table, rows, config, rng) -> tuple[np.ndarray, np.ndarray, list[str]]:
    codes, names = _categories(table, rows)
    groups = [rng.permutation(rows[codes == k]) for k in range(len(names))]
    groups = [g for g in groups if len(g)]
    if config.with_replacement:
        longest = max((len(g) for g in groups), default=0)
        groups = [np.concatenate([g, rng.choice(g, longest - len(g))]) for g in groups]
    # Round r takes the r-th row of every category that still has one, categories in order.
    rnd = np.concatenate([np.arange(len(g)) for g in groups]) if groups else np.zeros(0, np.int64)
    cat = np.concatenate([np.full(len(g), k) for k, g in enumerate(groups)]) if groups else rnd
    flat = np.concatenate(groups) if groups else rows[:0]
    order = np.lexsort((cat, rnd))
    return flat[order], np.zeros(len(order), dtype=np.int64), ["balanced"]


def _ordered(table, rows, config, rng) -> tuple[np.ndarray, np.ndarray]:
    """One-stage subset -> (rows in stream order, stage label per position)."""
    if config.order == "mixing":
        rows, rank, names = _mixing(rows, rng)
    elif config.order == "balanced":
        rows, rank, names = _balanced(table, rows, config, rng)
    else:
        rows, rank, names = _curriculum(table, rows, config, rng)
        if config.order == "reverse_curriculum":
            rows, rank = _reverse_stages(rows, rank, graded=bool(config.by))
    return rows, np.array(names, dtype=object)[rank]


def _stage_codes(stage: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Stage code per position, stage names in order of first appearance."""
    codes, names = column_codes(pa.array(stage.astype(str).tolist(), pa.string()))
    first = np.full(len(names), len(stage))
    np.minimum.at(first, codes, np.arange(len(stage)))
    order = np.argsort(first, kind="stable")
    remap = np.empty(len(names), dtype=np.int64)
    remap[order] = np.arange(len(names))
    return remap[codes], [names[i] for i in order]


def apply_order(table: pa.Table, subset: Subset, config: OrderConfig, seed: int = 0) -> Subset:
    """The subset reordered; stage labels set by the ordering (kept as is for "none" and for
    multi-stage subsets such as the difficulty plan, which are ordered within each stage)."""
    if config.order not in ORDERS:
        raise ValueError(f"unknown order {config.order!r}; use one of {ORDERS}")
    rng = np.random.default_rng(seed)
    codes, names = _stage_codes(subset.stage)
    if config.order == "none" or len(subset.rows) == 0:
        rows, stage = subset.rows, subset.stage
    elif len(names) > 1:
        rows_out, stage_out = [], []
        for k, name in enumerate(names):
            part, _ = _ordered(table, subset.rows[codes == k], config, rng)
            rows_out.append(part)
            stage_out.append(np.full(len(part), name, dtype=object))
        rows, stage = np.concatenate(rows_out), np.concatenate(stage_out)
    else:
        rows, stage = _ordered(table, subset.rows, config, rng)
    report = dict(
        subset.report,
        order={
            "order": config.order,
            "stages": list(config.stages),
            "by": config.by,
            "n_stages": config.n_stages,
            "with_replacement": config.with_replacement,
        },
    )
    return Subset(rows=rows, stage=stage, report=report, flagged=subset.flagged)


def _reverse_stages(rows, rank, graded: bool) -> tuple[np.ndarray, np.ndarray]:
    """Stages in reverse order. Inside a stage the order is kept, except for a difficulty
    curriculum, which is reversed row by row so it runs hardest first."""
    inner = np.arange(len(rows))[::-1] if graded else np.arange(len(rows))
    order = np.lexsort((inner, -rank))
    return rows[order], rank[order]

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

from selection.common import Subset, float_column, require_columns, string_column

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


def _mixing(rows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.permutation(rows), np.full(len(rows), "mix", dtype=object)


def _categories(table: pa.Table, rows: np.ndarray) -> np.ndarray:
    require_columns(table, ["category"], "this ordering")
    cats = string_column(table, "category", "unknown").to_numpy(zero_copy_only=False)
    return np.asarray(cats, dtype=object)[rows]


def _curriculum(table, rows, config, rng) -> tuple[np.ndarray, np.ndarray]:
    if config.by:
        col = config.by.lstrip("-")
        require_columns(table, [col], "curriculum by column")
        key = float_column(table, col)[rows] * (-1.0 if config.by.startswith("-") else 1.0)
        key = np.where(np.isfinite(key), key, np.inf)  # unknown difficulty goes last
        order = rows[np.lexsort((rng.random(len(rows)), key))]
        n = max(1, config.n_stages)
        stage_idx = (np.arange(len(order)) * n) // max(len(order), 1)
        return order, np.array([f"{col}_{i + 1}of{n}" for i in stage_idx], dtype=object)
    cats = _categories(table, rows)
    names = [*config.stages, "other"]
    rank = np.array(
        [names.index(c) if c in config.stages else len(config.stages) for c in cats], dtype=np.int64
    )
    order = np.lexsort((rng.random(len(rows)), rank))
    return rows[order], np.array([names[r] for r in rank[order]], dtype=object)


def _balanced(table, rows, config, rng) -> tuple[np.ndarray, np.ndarray]:
    cats = _categories(table, rows)
    names, codes = np.unique(cats.astype(str), return_inverse=True)
    groups = [rng.permutation(rows[codes == k]) for k in range(len(names))]
    if config.with_replacement:
        longest = max((len(g) for g in groups), default=0)
        groups = [
            np.concatenate([g, rng.choice(g, longest - len(g))]) if len(g) else g for g in groups
        ]
    # Round r takes the r-th row of every category that still has one: a category's rows sit
    # at round r, ordered by category inside the round.
    rnd = np.concatenate([np.arange(len(g)) for g in groups]) if groups else np.zeros(0, np.int64)
    cat = np.concatenate([np.full(len(g), k) for k, g in enumerate(groups)]) if groups else rnd
    flat = np.concatenate(groups) if groups else rows[:0]
    order = np.lexsort((cat, rnd))
    return flat[order], np.full(len(order), "balanced", dtype=object)


def apply_order(table: pa.Table, subset: Subset, config: OrderConfig, seed: int = 0) -> Subset:
    """The subset reordered; stage labels set by the ordering (kept as is for "none" and for
    multi-stage subsets such as the difficulty plan, which are ordered within each stage)."""
    if config.order not in ORDERS:
        raise ValueError(f"unknown order {config.order!r}; use one of {ORDERS}")
    rng = np.random.default_rng(seed)
    if config.order == "none" or len(subset.rows) == 0:
        rows, stage = subset.rows, subset.stage
    elif len(set(subset.stage.tolist())) > 1:
        rows, stage = _within_stages(table, subset, config, rng)
    elif config.order == "mixing":
        rows, stage = _mixing(subset.rows, rng)
    elif config.order == "balanced":
        rows, stage = _balanced(table, subset.rows, config, rng)
    else:
        rows, stage = _curriculum(table, subset.rows, config, rng)
        if config.order == "reverse_curriculum":
            rows, stage = _reverse_stages(rows, stage)
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


def _reverse_stages(rows: np.ndarray, stage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stages in reverse order, the order inside each stage kept (a difficulty curriculum is
    reversed row by row, so it runs hardest first)."""
    _, first = np.unique(stage, return_index=True)
    rank_of = {stage[i]: r for r, i in enumerate(np.sort(first))}
    rank = np.array([rank_of[s] for s in stage])
    order = np.lexsort(
        (np.arange(len(rows))[::-1] if _is_graded(stage) else np.arange(len(rows)), -rank)
    )
    return rows[order], stage[order]


def _is_graded(stage: np.ndarray) -> bool:
    return len(stage) > 0 and "of" in str(stage[0]) and "_" in str(stage[0])


def _within_stages(table, subset, config, rng) -> tuple[np.ndarray, np.ndarray]:
    """Order each stage of a multi-stage subset on its own, stages kept in their order."""
    rows_out, stage_out = [], []
    _, first = np.unique(subset.stage, return_index=True)
    for i in np.sort(first):
        name = subset.stage[i]
        part = Subset(
            rows=subset.rows[subset.stage == name],
            stage=np.full((subset.stage == name).sum(), "x", dtype=object),
        )
        ordered = apply_order(table, part, config, int(rng.integers(1 << 31)))
        rows_out.append(ordered.rows)
        stage_out.append(np.full(len(ordered.rows), name, dtype=object))
    return np.concatenate(rows_out), np.concatenate(stage_out)

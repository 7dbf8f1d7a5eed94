"""Orderings are permutations of the subset with the promised stage order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selection.common import Subset
from selection.orderings import ORDERS, OrderConfig, apply_order

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CATS = ["general", "chart", "ocr", "temporal"]


@st.composite
def subsets(draw):
    n = draw(st.integers(1, 80))
    cats = draw(st.lists(st.sampled_from(CATS), min_size=n, max_size=n))
    ppl = draw(st.lists(st.floats(0, 100, allow_nan=False), min_size=n, max_size=n))
    table = pa.table({"id": [str(i) for i in range(n)], "category": cats, "ppl": ppl})
    rows = np.array(draw(st.permutations(range(n)))[: draw(st.integers(1, n))])
    return (
        table,
        Subset(rows=rows, stage=np.full(len(rows), "all", dtype=object)),
        draw(st.integers(0, 99)),
    )


@SETTINGS
@given(subsets(), st.sampled_from(ORDERS))
def test_permutation_and_determinism(case, order):
    table, sub, seed = case
    out = apply_order(table, sub, OrderConfig(order=order), seed)
    assert sorted(out.rows.tolist()) == sorted(sub.rows.tolist())
    again = apply_order(table, sub, OrderConfig(order=order), seed)
    assert np.array_equal(out.rows, again.rows) and list(out.stage) == list(again.stage)


@SETTINGS
@given(subsets())
def test_curriculum_stage_order(case):
    table, sub, seed = case
    names = ["general", "chart", "ocr", "other"]
    cats = np.array(table.column("category").to_pylist())
    for order, direction in (("curriculum", 1), ("reverse_curriculum", -1)):
        out = apply_order(table, sub, OrderConfig(order=order), seed)
        rank = [names.index(s) for s in out.stage]
        assert np.all(np.diff(rank) * direction >= 0)
        expect = [c if c in names[:3] else "other" for c in cats[out.rows]]
        assert list(out.stage) == expect


@SETTINGS
@given(subsets())
def test_curriculum_by_difficulty_column(case):
    table, sub, seed = case
    ppl = np.array(table.column("ppl").to_pylist())
    out = apply_order(table, sub, OrderConfig(order="curriculum", by="ppl", n_stages=3), seed)
    assert np.all(np.diff(ppl[out.rows]) >= 0)
    rev = apply_order(
        table, sub, OrderConfig(order="reverse_curriculum", by="ppl", n_stages=3), seed
    )
    assert np.all(np.diff(ppl[rev.rows]) <= 0)


@SETTINGS
@given(subsets())
def test_balanced_windows(case):
    table, sub, seed = case
    cats = np.array(table.column("category").to_pylist())
    out = apply_order(table, sub, OrderConfig(order="balanced"), seed)
    seq = cats[out.rows]
    present, counts = np.unique(cats[sub.rows], return_counts=True)
    k, smallest = len(present), counts.min()
    # While every category still has rows, each window of k holds each category once.
    for w in range(smallest):
        assert sorted(seq[w * k : (w + 1) * k]) == sorted(present)
    rep = apply_order(table, sub, OrderConfig(order="balanced", with_replacement=True), seed)
    assert len(rep.rows) == k * counts.max()
    assert set(rep.rows.tolist()) == set(sub.rows.tolist())
    seq = cats[rep.rows]
    for w in range(counts.max()):
        assert sorted(seq[w * k : (w + 1) * k]) == sorted(present)


def test_multi_stage_subset_keeps_stage_order():
    table = pa.table({"id": [str(i) for i in range(6)], "category": ["ocr", "general"] * 3})
    sub = Subset(rows=np.arange(6), stage=np.array(["sft"] * 3 + ["grpo"] * 3, dtype=object))
    out = apply_order(table, sub, OrderConfig(order="curriculum"), 0)
    assert list(out.stage) == ["sft"] * 3 + ["grpo"] * 3
    assert sorted(out.rows[:3].tolist()) == [0, 1, 2]

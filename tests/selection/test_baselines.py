"""Random / full / per-category controls, OST top-k, PISM / CMAB strata and the plan."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selection.baselines import (
    DifficultyConfig,
    OSTConfig,
    SimpleConfig,
    cmab_levels,
    difficulty_select,
    full_select,
    ost_select,
    per_category_select,
    pism_levels,
    random_select,
)
from selection.common import MissingColumnsError
from selection.synthetic import descriptor_table

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def kept(table):
    """Rows every method may pick: dedup kept and no model_error."""
    keep = table.column("dup_keep").to_numpy(zero_copy_only=False)
    return keep & table.column("model_error").is_null().to_numpy(zero_copy_only=False)


@SETTINGS
@given(
    n=st.integers(10, 500),
    seed=st.integers(0, 999),
    budget=st.one_of(st.integers(1, 9), st.floats(0.01, 0.99)),
)
def test_random_meets_budget_and_is_seeded(n, seed, budget):
    table = descriptor_table(n, seed=seed)
    eligible = int(kept(table).sum())
    a = random_select(table, SimpleConfig(budget=budget), seed=seed)
    want = min(eligible, budget) if budget >= 1 else max(1, int(eligible * budget + 1e-9))
    assert len(a.rows) == want == len(np.unique(a.rows))
    assert np.array_equal(a.rows, random_select(table, SimpleConfig(budget=budget), seed=seed).rows)


def test_full_is_every_kept_row():
    table = descriptor_table(300, seed=1)
    keep = kept(table)
    assert full_select(table).rows.tolist() == np.flatnonzero(keep).tolist()
    no_error = table.column("model_error").is_null().to_numpy(zero_copy_only=False)
    assert len(full_select(table, SimpleConfig(drop_duplicates=False)).rows) == no_error.sum()


@SETTINGS
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    budget=st.integers(1, 120),
    seed=st.integers(0, 99),
)
def test_per_category_equal_shares(sizes, budget, seed):
    cats = [f"c{k}" for k, s in enumerate(sizes) for _ in range(s)]
    if not cats:
        return
    table = pa.table({"id": [str(i) for i in range(len(cats))], "category": cats})
    sub = per_category_select(table, SimpleConfig(budget=budget), seed=seed)
    got = np.unique(np.array(cats)[sub.rows], return_counts=True)
    counts = dict(zip(got[0].tolist(), got[1].tolist(), strict=True))
    assert len(sub.rows) == min(budget, len(cats))
    full = [c for c, s in zip([f"c{k}" for k in range(len(sizes))], sizes, strict=True) if s > 0]
    taken = [counts.get(c, 0) for c in full]
    not_full = [
        counts.get(c, 0)
        for c, s in zip(full, [s for s in sizes if s > 0], strict=True)
        if counts.get(c, 0) < s
    ]
    # Every category that is not exhausted has the maximum share (within one).
    if not_full:
        assert max(taken) - min(not_full) <= 1


def test_ost_top_and_bottom_k():
    util = np.array([0.5, -2.0, 3.0, 1.0, np.nan, -1.0, 2.0, 0.0, -3.0, 1.5])
    table = pa.table(
        {"id": [str(i) for i in range(10)], "ost_utility": pa.array(util, from_pandas=True)}
    )
    sub = ost_select(table, OSTConfig(budget=3, harmful=2))
    assert sub.rows.tolist() == [2, 6, 9]
    assert sub.flagged.tolist() == [8, 1]
    assert sub.report["no_utility"] == 1
    with pytest.raises(MissingColumnsError, match="ost_utility"):
        ost_select(pa.table({"id": ["a"]}))


def test_pism_and_cmab_thresholds():
    lam = np.array([0.0, 0.1, 0.4, 0.5, 0.6, 0.7, 0.9, 1.0, np.nan])
    assert pism_levels(lam).tolist() == [
        "unsolved",
        "hard",
        "hard",
        "medium",
        "medium",
        "easy",
        "easy",
        "easy",
        None,
    ]
    ratio = np.array([0.05, 0.1, 0.39, 0.4, 1.0, 1.6, 1.61, 1.9, 1.95])
    assert cmab_levels(ratio).tolist() == [
        "easy",
        "medium",
        "medium",
        "hard",
        "hard",
        "hard",
        "medium",
        "medium",
        "easy",
    ]


def test_difficulty_plan_counts_and_levels():
    table = descriptor_table(2000, seed=4)
    keep = kept(table)
    lv = np.array(table.column("pism_label").to_pylist(), dtype=object)
    sub = difficulty_select(table, DifficultyConfig(signal="pism"))
    sft = sub.rows[sub.stage == "sft"]
    grpo = sub.rows[sub.stage == "grpo"]
    assert sorted(sft.tolist()) == np.flatnonzero(keep & np.isin(lv, ["easy", "medium"])).tolist()
    assert sorted(grpo.tolist()) == np.flatnonzero(keep & np.isin(lv, ["medium", "hard"])).tolist()
    assert list(sub.stage[: len(sft)]) == ["sft"] * len(sft)  # SFT first, then GRPO
    hard = difficulty_select(
        table, DifficultyConfig(signal="cmab", plan=False, levels=("hard",), budget=50)
    )
    assert len(hard.rows) == 50
    assert set(np.array(table.column("cmab_label").to_pylist())[hard.rows]) == {"hard"}


def test_difficulty_from_values_when_labels_missing():
    table = descriptor_table(300, seed=4).drop_columns(["pism_label"])
    sub = difficulty_select(
        table, DifficultyConfig(signal="pism", plan=False, levels=("unsolved",))
    )
    lam = table.column("pism_lambda").to_numpy()
    assert (lam[sub.rows] == 0.0).all() and sub.report["levels_from"] == "pism_lambda thresholds"
    with pytest.raises(MissingColumnsError, match="cmab_ratio"):
        difficulty_select(
            table.drop_columns(["cmab_label", "cmab_ratio"]), DifficultyConfig(signal="cmab")
        )

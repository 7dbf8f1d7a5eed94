"""Shared helpers: question / answer extraction, token counts, budgets, fingerprints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from ray_jobs.select import parse_args
from selection.baselines import (
    DifficultyConfig,
    OSTConfig,
    SimpleConfig,
    difficulty_select,
    full_select,
    ost_select,
    per_category_select,
    random_select,
)
from selection.common import (
    distinct_token_counts,
    eligible_mask,
    pool_fingerprint,
    question_answer,
    resolve_budget,
    text_codes,
    token_counts,
)
from selection.gdo import PRESETS, UniformConfig, gdo_select, uniform_select
from selection.mmssr import MMSSRConfig, mmssr_select
from selection.synthetic import descriptor_table


def _msgs(*turns):
    return [{"role": r, "content": c} for r, c in turns]


def test_question_is_first_user_turn_without_placeholders():
    table = pa.table(
        {
            "messages": [
                _msgs(
                    ("system", "be nice"),
                    ("user", "<image>\nWhat  is\tthis?"),
                    ("assistant", "x"),
                    ("user", "and now?"),
                ),
                _msgs(("assistant", "no user turn")),
                _msgs(("user", "<video><video> Which came first?\nA. dog\nB. cat")),
            ],
            "answer": ["A  red   ball", None, "A"],
        }
    )
    q, a, raw = question_answer(table)
    assert q.to_pylist() == ["What is this?", "", "Which came first? A. dog B. cat"]
    assert a.to_pylist() == ["A red ball", "", "A"]
    assert "\nA. dog" in raw.to_pylist()[2]
    assert token_counts(q).tolist() == [3, 0, 7]
    assert distinct_token_counts(pa.array(["yes yes Yes", "", "a-b a_b"])).tolist() == [1, 0, 3]
    codes = text_codes(pa.array(["q", "q", "q2"]), pa.array(["a", "a", "a"]))
    assert codes[0] == codes[1] != codes[2]


def test_resolve_budget():
    assert resolve_budget(None, 100) is None
    assert resolve_budget(0.25, 100) == 25
    assert resolve_budget(30, 100) == 30 and resolve_budget(300, 100) == 100
    # A float in (0, 1] is a fraction: 1.0 is the whole pool, the integer 1 is one row.
    assert resolve_budget(1.0, 100) == 100 and resolve_budget(1, 100) == 1
    assert resolve_budget(np.int64(7), 100) == 7
    assert resolve_budget(0.29, 100) == 29  # not 28 from 100 * 0.29 = 28.999...
    assert resolve_budget(0.001, 100) == 1  # a fraction of a non-empty pool keeps a row
    for bad in (0, 0.0, -3, 1.5, 300.0, True):
        with pytest.raises(ValueError):
            resolve_budget(bad, 100)


def test_budget_one_point_zero_selects_the_whole_eligible_pool():
    table = descriptor_table(400, seed=6)
    eligible, report = eligible_mask(table, drop_duplicates=True)
    for method, config in (
        (random_select, SimpleConfig(budget=1.0)),
        (ost_select, OSTConfig(budget=1.0, harmful=0)),
    ):
        sub = method(table, config, seed=0)
        assert sorted(sub.rows.tolist()) == np.flatnonzero(eligible).tolist(), method.__name__
    # GDO aims at the whole pool; its text dedup, per-video cap and video share stop short.
    sub = gdo_select(table, replace(PRESETS["temp"], budget=1.0), seed=0)
    assert sub.report["budget"]["count"] == eligible.sum()
    assert sub.report["budget"]["mode"] == "fixed" and len(sub.rows) > 0.5 * eligible.sum()
    # mmSSR aims at the whole pool; rows with no capability above the threshold never qualify.
    sub = mmssr_select(table, MMSSRConfig(budget=1.0), seed=0)
    assert sub.report["budget"]["count"] == eligible.sum() == report["eligible_rows"]
    caps = np.stack([table.column(c).to_numpy() for c in table.column_names if c[:4] == "cap_"])
    qualify = eligible & (caps > 0).any(axis=0)
    assert qualify[sub.rows].all() and len(sub.rows) >= 0.9 * qualify.sum()


def test_cli_budget_keeps_int_and_float_apart():
    assert parse_args(["--run", "r", "--budget", "1.0"]).budget == 1.0
    assert isinstance(parse_args(["--run", "r", "--budget", "1.0"]).budget, float)
    assert parse_args(["--run", "r", "--budget", "1"]).budget == 1
    assert isinstance(parse_args(["--run", "r", "--budget", "250"]).budget, int)


def test_model_error_rows_are_ineligible_and_counted_by_reason():
    table = descriptor_table(3000, seed=7)
    errors = table.column("model_error").to_pylist()
    want = {}
    for e in errors:
        if e is not None:
            want[e.split(":")[0]] = want.get(e.split(":")[0], 0) + 1
    assert len(want) == 3 and sum(want.values()) > 10
    mask, report = eligible_mask(table, drop_duplicates=False)
    assert report["dropped_model_error"] == want
    assert mask.tolist() == [e is None for e in errors]
    failed = np.array([e is not None for e in errors])
    for method, config in (
        (gdo_select, replace(PRESETS["temp+"], budget=0.5)),
        (uniform_select, UniformConfig(preset=PRESETS["temp"], budget=0.5)),
        (mmssr_select, MMSSRConfig(budget=0.5)),
        (ost_select, OSTConfig(budget=0.5)),
        (random_select, SimpleConfig(budget=0.5)),
        (full_select, SimpleConfig()),
        (per_category_select, SimpleConfig(budget=0.5)),
        (difficulty_select, DifficultyConfig(signal="pism")),
    ):
        sub = method(table, config, seed=0)
        assert not failed[sub.rows].any(), method.__name__
        assert sub.report["dropped_model_error"] == want, method.__name__


def test_fingerprint_tracks_values_and_order():
    table = descriptor_table(200, seed=1)
    cols = ["loss", "source"]
    same = pool_fingerprint(descriptor_table(200, seed=1), cols)
    assert pool_fingerprint(table, cols) == same
    loss = table.column("loss").to_numpy().copy()
    loss[7] += 1e-9
    changed = table.set_column(table.column_names.index("loss"), "loss", pa.array(loss))
    assert pool_fingerprint(changed, cols) != same
    assert pool_fingerprint(table.take(pa.array(np.arange(200)[::-1])), cols) != same

"""Shared helpers: question / answer extraction, token counts, budgets, fingerprints."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from selection.common import (
    distinct_token_counts,
    pool_fingerprint,
    question_answer,
    resolve_budget,
    text_codes,
    token_counts,
)
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
    with pytest.raises(ValueError):
        resolve_budget(0, 100)
    with pytest.raises(ValueError):
        resolve_budget(2.5, 100)


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

"""mmSSR selection against a brute-force re-implementation of the reference loop."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selection.common import MissingColumnsError
from selection.mmssr import MMSSRConfig, mmssr_select
from selection.synthetic import STYLES, descriptor_table


def brute_force(scores, styles, sources, caps, target, thr, tie_rank):
    """Plain-Python mmSSR: the reference's while / for / select loops over lists and dicts."""
    chosen, order = set(), []
    active = list(caps)
    while len(chosen) < target and active:
        every = max((target - len(chosen)) // len(active), 1)
        dropped = []
        for c in active:
            every = min(every, target - len(chosen))
            cands = [i for i in range(len(sources)) if i not in chosen and scores[c][i] > thr]
            cands.sort(key=lambda i: (-scores[c][i], tie_rank[i]))
            bins = {}
            for i in cands:
                for s in dict.fromkeys(styles[i]):
                    bins.setdefault(f"{s}+{sources[i]}", []).append(i)
            new = []
            if bins:
                per_bin, debt = max(every // len(bins), 1), 0
                for label in sorted(bins, key=lambda k: (len(bins[k]), k)):
                    if len(new) >= every:
                        break
                    free = [i for i in bins[label] if i not in new]
                    k = min(per_bin + debt, len(free), every - len(new))
                    debt = max(per_bin + debt - len(free), 0)
                    new += free[:k]
            if not new:
                dropped.append(c)
            chosen.update(new)
            order += new
            if len(chosen) >= target:
                break
        active = [c for c in active if c not in dropped]
    return order


@st.composite
def pools(draw):
    n = draw(st.integers(1, 40))
    caps = draw(
        st.lists(
            st.sampled_from(["ocr", "humanities", "stem_knowledge", "logical_deduction"]),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    cols = {
        "id": [f"r{i}" for i in range(n)],
        "source": draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n)),
        "styles": draw(
            st.lists(st.lists(st.sampled_from(STYLES[:4]), max_size=3), min_size=n, max_size=n)
        ),
    }
    for c in caps:
        cols[f"cap_{c}"] = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    table = pa.table(cols).set_column(2, "styles", pa.array(cols["styles"], pa.list_(pa.string())))
    return table, caps, draw(st.integers(1, n)), draw(st.integers(0, 3)), draw(st.integers(0, 99))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools())
def test_matches_brute_force(case):
    table, caps, budget, thr, seed = case
    sub = mmssr_select(
        table, MMSSRConfig(capabilities=tuple(caps), budget=budget, threshold=thr), seed=seed
    )
    n = table.num_rows
    tie_rank = np.empty(n, dtype=np.int64)
    tie_rank[np.random.default_rng(seed).permutation(n)] = np.arange(n)
    scores = {c: table.column(f"cap_{c}").to_pylist() for c in caps}
    expect = brute_force(
        scores,
        table.column("styles").to_pylist(),
        table.column("source").to_pylist(),
        caps,
        budget,
        thr,
        tie_rank.tolist(),
    )
    assert sub.rows.tolist() == expect
    assert len(sub.rows) <= budget


def test_budget_met_on_a_realistic_pool_and_deterministic():
    table = descriptor_table(5000, seed=3)
    a = mmssr_select(table, MMSSRConfig(budget=0.25), seed=1)
    b = mmssr_select(table, MMSSRConfig(budget=0.25), seed=1)
    eligible = a.report["eligible_rows"]
    no_error = table.column("model_error").is_null().to_numpy(zero_copy_only=False)
    assert eligible == int(
        (table.column("dup_keep").to_numpy(zero_copy_only=False) & no_error).sum()
    )
    assert len(a.rows) == int(eligible * 0.25) and np.array_equal(a.rows, b.rows)
    assert len(np.unique(a.rows)) == len(a.rows)
    keep = table.column("dup_keep").to_numpy(zero_copy_only=False)
    assert keep[a.rows].all()


def test_missing_capability_columns_are_named():
    table = descriptor_table(50, seed=0).drop_columns(["cap_ocr", "cap_humanities"])
    with pytest.raises(
        MissingColumnsError, match="cap_humanities.*cap_ocr|cap_ocr.*cap_humanities"
    ):
        mmssr_select(table, MMSSRConfig())

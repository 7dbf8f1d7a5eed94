"""GDO's temporal label: the prompted reply first, else the loss gap by the stated rule; the
strata and the merged quality read the label, never the raw (unbounded) loss gap."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from selection.gdo import PRESETS, gdo_select
from selection.gdo_score import merged_quality
from selection.gdo_strata import pool_fields
from selection.gdo_temporal import LABEL_COLUMN, TemporalRule, gdo_temporal_label
from selection.synthetic import descriptor_table


def test_rule_thresholds_and_nan():
    rule = TemporalRule(temporal_gap=0.05, static_gap=0.01)
    gap = np.array([-0.3, 0.0, 0.01, 0.0101, 0.0499, 0.05, 2.5, np.nan])
    got = rule.label(gap)
    assert got[:7] == pytest.approx([0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0])
    assert np.isnan(got[7])
    with pytest.raises(ValueError):
        TemporalRule(temporal_gap=0.01, static_gap=0.05)


def test_prompted_first_then_gap_then_none():
    t = pa.table(
        {
            "media_type": ["video", "video", "video", "video", "image"],
            "temporal_prompted": pa.array([0.0, None, None, 1.0, None], pa.float64()),
            "temporal_loss_gap": pa.array([0.9, 0.9, None, -0.2, 0.7], pa.float64()),
        }
    )
    label, counts = gdo_temporal_label(t, TemporalRule())
    # prompted Static wins over a large gap; the gap labels row 1; row 2 has no source.
    assert label[[0, 1, 3, 4]] == pytest.approx([0.0, 1.0, 1.0, 0.0])
    assert np.isnan(label[2])
    assert counts == {
        "temporal_prompted": 2,
        "temporal_loss_gap": 1,
        "not_video": 1,
        "unlabelled_video": 1,
    }


def test_merged_quality_adds_the_label_not_the_gap():
    # Two rows alike but for the loss gap: 3.0 nats (label 1) vs 0.03 (label 0.5).
    base = {"vds": [0.5, 0.5], "ppl": [2.0, 2.0], "media_type": ["video", "video"]}
    t = pa.table(base | {"temporal_loss_gap": [3.0, 0.03]})
    label, _ = gdo_temporal_label(t, TemporalRule())
    q, info = merged_quality(t.append_column(LABEL_COLUMN, pa.array(label)))
    assert q[0] - q[1] == pytest.approx(0.12 * (1.0 - 0.5), abs=1e-12)
    assert info["present"][LABEL_COLUMN] is True


def test_strata_from_the_gap_label_on_a_realistic_table():
    table = descriptor_table(2000, seed=3)
    label, counts = gdo_temporal_label(table, TemporalRule())
    video = np.asarray(table.column("media_type").to_numpy(zero_copy_only=False)) == "video"
    gap = table.column("temporal_loss_gap").to_numpy(zero_copy_only=False)
    measured = video & np.isfinite(gap)  # model_error rows have no gap
    assert counts["temporal_loss_gap"] == measured.sum() and counts["temporal_prompted"] == 0
    assert counts["unlabelled_video"] == (video & ~measured).sum() > 0
    assert (gap[video] < 0).any(), "the drawn gap must look real: negative values occur"
    sub = table.append_column(LABEL_COLUMN, pa.array(label))
    q_raw = pa.array([""] * table.num_rows)
    z = np.zeros(table.num_rows, dtype=np.int64)
    fields = pool_fields(sub, q_raw, z, z)
    codes = fields.codes["temporal"]
    assert fields.temporal_source == f"{LABEL_COLUMN} (keyword where null)"
    expect = np.where(gap >= 0.05, 2, np.where(gap <= 0.01, 0, 1))
    assert (codes[measured] == expect[measured]).all()
    assert (codes[video & ~measured] == 1).all()  # no keyword in an empty question: Mixed
    assert (codes[~video] == 0).all()
    assert set(np.unique(codes[video])) == {0, 1, 2}


def test_gdo_reports_where_its_temporal_labels_came_from():
    table = descriptor_table(600, seed=4, prompted_temporal=True)
    sub = gdo_select(table, replace(PRESETS["temp+"], budget=80), seed=0)
    counts = sub.report["temporal_label"]
    eligible = sub.report["eligible_rows"]
    assert counts["temporal_loss_gap"] == 0 and counts["unlabelled_video"] == 0
    assert counts["temporal_prompted"] + counts["not_video"] == eligible
    assert sub.report["temporal_from"] == LABEL_COLUMN

"""GDO score formulas against values worked by hand from rujiewu/GDO (merge_metrics.py,
build_pair.py), and the budget rule / quotas on small worked examples."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from selection.gdo_score import (
    GDOScoreConfig,
    difficulty_score,
    merged_quality,
    robust_z,
    selection_score,
    text_quality,
)
from selection.gdo_strata import (
    a_len_bucket,
    duration_bucket,
    largest_remainder,
    q_len_bucket,
    recommend_budget,
    source_group,
)

S = 2 / 1.349  # IQR/1.349 of 1..5 style columns: quartiles 2 and 4


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_robust_z_median_and_iqr():
    z = robust_z(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert z == pytest.approx([-2 / S, -1 / S, 0.0, 1 / S, 2 / S])
    # A constant column: the IQR floor keeps it finite and zero.
    assert robust_z(np.zeros(4)) == pytest.approx([0, 0, 0, 0])


def test_merged_quality_worked_rows():
    t = pa.table(
        {
            "vds": [0.0, 1.0, 2.0, 3.0, 4.0],
            "ppl": [1.0, 2.0, 3.0, 4.0, 5.0],
            "motion": [0.0] * 5,
            "frame_div": [0.0] * 5,
            "gdo_temporal_label": [1.0, 0.0, 0.5, 1.0, 0.0],
            "cluster_dist": [0.0, 1.0, 0.0, 0.0, 2.0],
            "stability": pa.array([0.5, None, 0.2, 0.9, 0.4]),
        }
    )
    q, info = merged_quality(t)
    # Row 0: z_vds = z_ppl = -2/S, stability 0.5, temporal 1, dist 0.
    z = -2 / S
    row0 = 0.28 * sig(z) + 0.18 * 0.5 + 0.14 * math.exp(-abs(z)) + 0.12 * 1 + 0.12 * 1 + 0.10 * 1
    # Row 1: stability missing, SC = sigmoid(0.6 z_vds - 0.2 |z_ppl|); dist 1.
    z = -1 / S
    sc = sig(0.6 * z - 0.2 * abs(z))
    row1 = (
        0.28 * sig(z)
        + 0.18 * sc
        + 0.14 * math.exp(-abs(z))
        + 0.12
        + 0.0
        + 0.10 * math.exp(-1)
        + 0.06 * (1 - math.exp(-1))
    )
    assert q[0] == pytest.approx(row0, abs=1e-12)
    assert q[1] == pytest.approx(row1, abs=1e-12)
    assert info["sc_fallback_rows"] == 1


def test_merged_quality_without_stability_column_uses_fallback():
    t = pa.table({"vds": [0.0, 1.0, 2.0, 3.0, 4.0], "ppl": [1.0, 2.0, 3.0, 4.0, 5.0]})
    q, info = merged_quality(t)
    assert info["present"]["stability"] is False and info["sc_fallback_rows"] == 5
    z = 2 / S  # row 4
    expect = (
        0.28 * sig(z)
        + 0.18 * sig(0.6 * z - 0.2 * z)
        + 0.14 * math.exp(-z)
        + 0.12
        + 0.12 * 0.5
        + 0.10
    )
    assert q[4] == pytest.approx(expect, abs=1e-12)


def test_text_quality_and_difficulty():
    # 14 question tokens, 16 distinct answer tokens: the optimum, 0.
    assert text_quality(np.array([14]), np.array([16]), np.array([16]))[0] == pytest.approx(0.0)
    # "yes yes": 2 tokens, 1 distinct -> diversity 0.5, penalty 1.2 * 0.05.
    got = text_quality(np.array([7]), np.array([2]), np.array([1]))[0]
    assert got == pytest.approx(-math.log(2) - 1.25 * math.log(8) - 1.2 * 0.05)
    assert difficulty_score(np.array([22]), np.array([0]))[0] == pytest.approx(1.0)
    assert difficulty_score(np.array([0]), np.array([0]))[0] == pytest.approx(
        math.exp(-(math.log(22) ** 2) / (2 * 0.85**2))
    )
    assert difficulty_score(np.array([12]), np.array([20]))[0] == pytest.approx(1.0)


def _terms(base_parts):
    return {k: np.array([v, v]) for k, v in base_parts.items()}


def test_selection_score_video_and_image_and_ablations():
    parts = {
        "text_quality": -0.5,
        "difficulty": 0.8,
        "alignment": -2.0,
        "temporal_bonus": 1.0,
        "source_prior": 1.5,
    }
    video_base = -0.5 + 0.85 * 0.8 + 0.9 * -2.0 + 0.55 * 1.0 + 0.15 * 1.5
    image_base = 1.1 * -0.5 + 0.85 * 0.8 + 0.9 * -2.0 + 0.15 * 1.5
    is_video = np.array([True, False])
    has = np.array([True, True])
    vds3, zq = np.array([2.0, 2.0]), np.array([-1.0, -1.0])
    score, base = selection_score(_terms(parts), is_video, has, vds3, zq, GDOScoreConfig())
    assert base == pytest.approx([video_base, image_base])
    assert score[0] == pytest.approx(0.35 * math.tanh(video_base / 3) + 0.95 * 0.5 + 0.35 * -0.25)
    assert score[1] == pytest.approx(0.9 * math.tanh(image_base / 3) + 0.15 * -0.25)
    no_vds, _ = selection_score(
        _terms(parts), is_video, has, vds3, zq, GDOScoreConfig(use_vds=False)
    )
    assert no_vds[0] == pytest.approx(score[0] - 0.95 * 0.5) and no_vds[1] == pytest.approx(
        score[1]
    )
    no_sc, _ = selection_score(_terms(parts), is_video, has, vds3, zq, GDOScoreConfig(use_sc=False))
    assert no_sc[1] == pytest.approx(0.9 * math.tanh(image_base / 3))
    no_ppl, base2 = selection_score(
        _terms(parts), is_video, has, vds3, zq, GDOScoreConfig(use_ppl=False)
    )
    assert base2 == pytest.approx([video_base + 0.5, image_base + 0.55])
    # A video without metrics pays the 0.15 penalty; VDS3 is clipped at 4 -> 1.
    miss, _ = selection_score(
        _terms(parts),
        is_video,
        np.array([False, False]),
        np.array([9.0, 9.0]),
        zq,
        GDOScoreConfig(),
    )
    assert miss[0] == pytest.approx(0.35 * math.tanh(video_base / 3) - 0.15)
    big, _ = selection_score(
        _terms(parts), is_video, has, np.array([9.0, 9.0]), zq, GDOScoreConfig()
    )
    assert big[0] == pytest.approx(0.35 * math.tanh(video_base / 3) + 0.95 + 0.35 * -0.25)


def test_buckets_and_source_groups():
    assert list(q_len_bucket(np.array([6, 7, 14, 15, 30, 60, 61]))) == [
        "q_tiny",
        "q_short",
        "q_short",
        "q_medium",
        "q_medium",
        "q_long",
        "q_very_long",
    ]
    assert list(a_len_bucket(np.array([2, 3, 8, 24, 64, 65]))) == [
        "a_tiny",
        "a_short",
        "a_short",
        "a_medium",
        "a_long",
        "a_very_long",
    ]
    assert list(duration_bucket(np.array([1, 8, 9, 24, 64, 160, 161]))) == [
        "image",
        "very_short",
        "short",
        "short",
        "medium",
        "long",
        "very_long",
    ]
    assert source_group("llava_ov_chartqa(cauldron)") == "llava_ov_chartqa"
    assert source_group("a_b_c_d_e_f") == "a_b_c_d"
    assert source_group("a_b") == "a_b"
    assert source_group("") == "unknown"


def test_budget_rule_worked_example():
    rule = {
        "min_count": 1,
        "max_count": 1000,
        "min_ratio": 0.0,
        "max_ratio": 1.0,
        "strata_mult": 2.0,
        "coverage_mass": 0.95,
        "tail_target": 1.0,
    }
    n, info = recommend_budget(np.array([50, 30, 20]), 100, rule)
    h = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    assert info["n_from_effective_strata"] == math.ceil(math.exp(h) * 2) == 6
    assert info["covered_strata"] == 3 and info["n_from_tail_coverage"] == 5
    assert n == 6
    n, _ = recommend_budget(np.array([50, 30, 20]), 100, dict(rule, max_ratio=0.04))
    assert n == 4


def test_largest_remainder():
    assert largest_remainder(np.array([5, 3, 2]), 4).tolist() == [2, 1, 1]
    assert largest_remainder(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]
    assert largest_remainder(np.array([0, 0]), 5).tolist() == [0, 0]

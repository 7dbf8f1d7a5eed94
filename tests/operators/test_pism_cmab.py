"""PISM masks, λ* search and labels; CMAB ratio and bands, on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from operators.cmab import cmab_label, cmab_ratio, middle_layers
from operators.pism import (
    PismConfig,
    mask_media,
    patch_mask,
    pism_label,
    rectangle_mask,
    search_lambda,
)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.9])
def test_rectangle_mask_area_and_shape(ratio):
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rectangle_mask(64, 64, ratio, rng)
        assert abs(mask.mean() - ratio) < 0.03  # side rounding at 64 px
        rows, cols = np.nonzero(mask)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == mask.sum()  # one filled rectangle
    assert not rectangle_mask(64, 64, 0.0, rng).any()


def test_patch_mask_covers_exact_patch_share():
    mask = patch_mask(56, 56, 0.5, np.random.default_rng(1), patch=14)
    blocks = mask.reshape(4, 14, 4, 14).transpose(0, 2, 1, 3).reshape(16, -1)
    assert set(blocks.mean(axis=1)) <= {0.0, 1.0}  # whole patches
    assert blocks.mean(axis=1).sum() == 8


def test_mask_media_blackens_every_frame_alike_and_is_seeded():
    image = np.full((64, 64, 3), 255, np.uint8)
    video = np.full((4, 64, 64, 3), 255, np.uint8)
    config = PismConfig()
    masked_image, masked_video = mask_media([image, video], 0.4, config, "row", 3)
    assert (image == 255).all()  # inputs untouched
    black = (masked_image == 0).all(axis=-1)
    assert abs(black.mean() - 0.4) < 0.03
    for frame in masked_video:
        assert ((frame == 0).all(axis=-1) == (masked_video[0] == 0).all(axis=-1)).all()
    again = mask_media([image], 0.4, config, "row", 3)[0]
    assert (again == masked_image).all()
    other = mask_media([image], 0.4, config, "row", 4)[0]
    assert not (other == masked_image).all()


def test_pism_labels_follow_paper_thresholds():
    assert pism_label(0.0) == "unsolved"
    assert [pism_label(x) for x in (0.1, 0.4)] == ["hard", "hard"]
    assert [pism_label(x) for x in (0.5, 0.6)] == ["medium", "medium"]
    assert [pism_label(x) for x in (0.7, 0.9, 1.0)] == ["easy", "easy", "easy"]


def test_search_lambda_finds_first_failing_ratio_and_stops_early():
    # Sample s keeps accuracy 1.0 below its breaking ratio and 0.05 from it on.
    breaks = [0.0, 0.3, 0.5, 0.9, None]
    calls = []

    def accuracy(active, ratio):
        calls.append((ratio, list(active)))
        return [
            0.05 if breaks[i] is not None and ratio >= breaks[i] - 1e-9 else 1.0 for i in active
        ]

    lam = search_lambda([str(i) for i in range(5)], accuracy, PismConfig())
    assert lam.tolist() == [0.0, 0.3, 0.5, 0.9, 1.0]
    assert [pism_label(x) for x in lam] == ["unsolved", "hard", "medium", "easy", "easy"]
    assert calls[1] == (0.1, [1, 2, 3, 4])  # sample 0 left after ratio 0
    assert calls[-1] == (0.9, [3, 4])
    assert len(calls) == 10


def test_search_lambda_threshold_is_strict():
    lam = search_lambda(["a"], lambda active, ratio: [0.1], PismConfig(tau=0.1))
    assert lam.tolist() == [1.0]  # accuracy equal to τ does not fail


def test_cmab_ratio_geometric_mean_over_middle_layers():
    ratios = np.array([[100.0, 100.0], [1.0, 4.0], [4.0, 1.0], [100.0, 100.0]])
    assert cmab_ratio(ratios) == pytest.approx(2.0)  # each token: sqrt(1 * 4)
    tokens = np.array([[5.0, 5.0, 5.0], [0.5, 2.0, 1.0], [0.5, 2.0, 1.0], [5.0, 5.0, 5.0]])
    assert cmab_ratio(tokens) == pytest.approx((0.5 + 2.0 + 1.0) / 3)
    assert middle_layers(2) == slice(0, 2)
    assert np.isnan(cmab_ratio(np.zeros((4, 0))))


def test_cmab_bands():
    assert [cmab_label(x) for x in (0.4, 1.0, 1.6)] == ["hard"] * 3
    assert [cmab_label(x) for x in (0.1, 0.39, 1.61, 1.9)] == ["medium"] * 4
    assert [cmab_label(x) for x in (0.0, 0.09, 1.91, 10.0)] == ["easy"] * 4
    assert cmab_label(float("nan")) is None

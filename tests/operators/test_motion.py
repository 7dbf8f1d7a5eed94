"""GDO's CPU descriptors: motion and frame_div against direct formulas, media facts, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa
import pytest

from operators.motion import MotionConfig, describe_media, frame_div, gray_frames, motion
from ray_jobs import synthetic_media as sm


def _video(tmp_path, direction: str, name: str = "v.mp4", frames: int = 12) -> str:
    rgb = sm.render_video_frames(
        {"shape": "square", "color": "blue", "x": 32, "y": 32, "r": 10}, direction, frames
    )
    path = str(tmp_path / name)
    sm.save_video(rgb, path)
    return path


def test_motion_equals_plain_farneback_loop():
    rng = np.random.default_rng(0)
    base = (rng.random((64, 64)) * 255).astype(np.uint8)
    frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(4)])
    rgb = np.repeat(frames[..., None], 3, axis=3)
    grays = gray_frames(rgb, 224)
    expected = []
    for a, b in zip(grays[:-1], grays[1:], strict=True):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 15, 2, 5, 1.1, 0)
        expected.append(np.linalg.norm(flow.astype(np.float64), axis=2).mean())
    assert abs(motion(grays) - np.mean(expected)) < 1e-9
    diffs = [
        np.abs(b.astype(float) - a.astype(float)).mean() / 255
        for a, b in zip(grays[:-1], grays[1:], strict=True)
    ]
    assert abs(frame_div(grays) - np.mean(diffs)) < 1e-12


def test_moving_object_has_more_motion_than_still(tmp_path):
    batch = pa.table(
        {
            "id": ["moving", "still", "image", "text"],
            "media_type": ["video", "video", "image", "text"],
            "media": [
                [_video(tmp_path, "right", "a.mp4")],
                [_video(tmp_path, "still", "b.mp4")],
                [str(tmp_path / "i.png")],
                [],
            ],
        }
    )
    sm.save_image(sm.render_word("cat"), str(tmp_path / "i.png"))
    out = describe_media(batch, MotionConfig()).to_pylist()
    moving, still, image, text = out
    assert moving["motion"] > 1.0 and still["motion"] < 0.05
    assert moving["frame_div"] > still["frame_div"]
    assert moving["num_frames"] == 12 and moving["width"] == 64 and moving["fps"] == 8.0
    assert abs(moving["duration"] - 1.5) < 1e-9
    assert image["motion"] == 0.0 and image["width"] == 64 and image["num_frames"] == 1
    assert text["motion"] is None and text["score_error"] is None
    assert all(r["score_reason"] is None for r in out)


@pytest.mark.parametrize("shape", sm.SHAPES)
def test_every_color_moves_visibly_in_gray(tmp_path, shape):
    """Motion reads gray frames, where a yellow fill (gray ~196) all but vanishes on the pool's
    darkest video background (205); the video objects' dark outline keeps every color visible."""
    paths = {}
    for color in sm.COLORS:
        for direction, x in (("right", 12), ("still", 32)):
            obj = {"shape": shape, "color": color, "x": x, "y": 32, "r": 14}
            path = str(tmp_path / f"{color}_{direction}.mp4")
            sm.save_video(sm.render_video_frames(obj, direction, 16, background=205), path)
            paths[color, direction] = path
    batch = pa.table(
        {
            "id": [f"{c}_{d}" for c, d in paths],
            "media_type": ["video"] * len(paths),
            "media": [[p] for p in paths.values()],
        }
    )
    rows = describe_media(batch, MotionConfig()).to_pylist()
    moving = {r["id"]: r["motion"] for r in rows if r["id"].endswith("_right")}
    still = {r["id"]: r["motion"] for r in rows if r["id"].endswith("_still")}
    assert min(moving.values()) > 0.3, moving  # without the outline, yellow gives ~0.006
    assert max(still.values()) < 0.05, still


def test_corrupt_video_sets_reason_instead_of_raising(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 40)
    batch = pa.table({"id": ["x"], "media_type": ["video"], "media": [[str(bad)]]})
    row = describe_media(batch).to_pylist()[0]
    assert row["score_reason"] == "undecodable_media"
    assert "bad.mp4" in row["score_error"] and row["motion"] is None

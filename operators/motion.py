"""CPU media descriptors of GDO: motion, frame_div, and the media facts, as a batch operator.

GDO (Goal-Driven Data Optimization, Wu & Zhao 2026), ARCHITECTURE.md section 4:
- motion_v1: Farneback dense optical flow (Farneback 2003) between consecutive frames of up to
  8 uniformly sampled frames, each converted to gray and resized to 224x224; parameters
  pyr_scale 0.5, levels 2, winsize 15, iterations 2, poly_n 5, poly_sigma 1.1, flags 0.
  motion = mean over consecutive pairs t of mean over pixels of |flow_t| = sqrt(dx^2 + dy^2).
- frame_div_v1 = mean over the same pairs of mean over pixels of |g_{t+1} - g_t| / 255.
Both are 0 for images (a single frame) and null for text-only rows.
Media facts: width, height, num_frames, fps, duration of the row's first media file.

Only the sampled frames are decoded (decoding stops after the last one). A row whose media
cannot be decoded gets `score_reason` / `score_error` set, and the score stage quarantines it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from operators.media import MediaError, load_image, read_video_frames

__all__ = [
    "DESCRIPTOR_FIELDS",
    "MotionConfig",
    "describe_media",
    "frame_div",
    "gray_frames",
    "motion",
]

DESCRIPTOR_FIELDS = [
    pa.field("motion", pa.float64()),
    pa.field("frame_div", pa.float64()),
    pa.field("width", pa.int64()),
    pa.field("height", pa.int64()),
    pa.field("num_frames", pa.int64()),
    pa.field("fps", pa.float64()),
    pa.field("duration", pa.float64()),
    pa.field("score_reason", pa.string()),
    pa.field("score_error", pa.string()),
]


@dataclass(frozen=True)
class MotionConfig:
    """CPU descriptor settings (help on each field); the defaults are GDO's."""

    frames: int = 8  # frames sampled uniformly per video
    size: int = 224  # frames are resized to size x size gray before the flow
    pyr_scale: float = 0.5  # Farneback pyramid scale
    levels: int = 2  # Farneback pyramid levels
    winsize: int = 15  # Farneback averaging window
    iterations: int = 2  # Farneback iterations per level
    poly_n: int = 5  # Farneback polynomial neighbourhood
    poly_sigma: float = 1.1  # Farneback polynomial Gaussian sigma
    motion: bool = True  # compute `motion`
    frame_div: bool = True  # compute `frame_div`
    media_facts: bool = True  # record width, height, num_frames, fps, duration


def gray_frames(frames: np.ndarray, size: int) -> list[np.ndarray]:
    """RGB frames (T, H, W, 3) uint8 -> T gray uint8 frames of size x size (area resampling)."""
    import cv2

    return [
        cv2.resize(
            cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY),
            (size, size),
            interpolation=cv2.INTER_AREA,
        )
        for f in frames
    ]


def motion(grays: list[np.ndarray], config: MotionConfig = MotionConfig()) -> float:
    """GDO motion: mean over consecutive pairs of the mean Farneback flow magnitude."""
    import cv2

    if len(grays) < 2:
        return 0.0
    means = []
    for prev, nxt in zip(grays[:-1], grays[1:], strict=True):
        flow = cv2.calcOpticalFlowFarneback(
            prev,
            nxt,
            None,
            config.pyr_scale,
            config.levels,
            config.winsize,
            config.iterations,
            config.poly_n,
            config.poly_sigma,
            0,
        )
        flow = flow.astype(np.float64)
        means.append(float(np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2).mean()))
    return float(np.mean(means))


def frame_div(grays: list[np.ndarray]) -> float:
    """GDO frame_div: mean over consecutive pairs of mean |Δpixel| / 255."""
    if len(grays) < 2:
        return 0.0
    diffs = [
        np.abs(nxt.astype(np.float64) - prev.astype(np.float64)).mean() / 255.0
        for prev, nxt in zip(grays[:-1], grays[1:], strict=True)
    ]
    return float(np.mean(diffs))


def _describe_one(media_type: str, paths: list[str], config: MotionConfig) -> dict:
    empty = {f.name: None for f in DESCRIPTOR_FIELDS}
    if media_type not in ("image", "video") or not paths:
        return empty
    if media_type == "image":
        image = load_image(paths[0])
        out = {"motion": 0.0, "frame_div": 0.0, "num_frames": 1, "fps": 0.0, "duration": 0.0}
        out.update(width=image.shape[1], height=image.shape[0])
    else:
        frames, facts = read_video_frames(paths[0], config.frames)
        grays = gray_frames(frames, config.size) if (config.motion or config.frame_div) else []
        out = {
            "motion": motion(grays, config) if config.motion else None,
            "frame_div": frame_div(grays) if config.frame_div else None,
            "width": facts.width,
            "height": facts.height,
            "num_frames": facts.num_frames,
            "fps": facts.fps,
            "duration": facts.duration,
        }
    if not config.media_facts:
        out.update(width=None, height=None, num_frames=None, fps=None, duration=None)
    return {**empty, **out}


def describe_media(batch: pa.Table, config: MotionConfig = MotionConfig()) -> pa.Table:
    """Ray Data batch operator: add the CPU descriptor columns (DESCRIPTOR_FIELDS).

    Rows already carrying a `score_error` pass through; a media file that cannot be decoded
    sets `score_reason` (undecodable_media) and `score_error` instead of raising.
    """
    previous = (
        batch.column("score_error").to_pylist()
        if "score_error" in batch.column_names
        else [None] * batch.num_rows
    )
    rows = []
    media_types, media = batch.column("media_type").to_pylist(), batch.column("media").to_pylist()
    for media_type, paths, error in zip(media_types, media, previous, strict=True):
        if error is not None:
            rows.append({f.name: None for f in DESCRIPTOR_FIELDS} | {"score_error": error})
            continue
        try:
            rows.append(_describe_one(media_type, paths or [], config))
        except MediaError as err:
            rows.append(
                {f.name: None for f in DESCRIPTOR_FIELDS}
                | {"score_reason": "undecodable_media", "score_error": str(err)}
            )
    if "score_reason" in batch.column_names:
        reasons = batch.column("score_reason").to_pylist()
        for row, reason in zip(rows, reasons, strict=True):
            row["score_reason"] = row["score_reason"] or reason
    descriptors = pa.Table.from_pylist(rows, schema=pa.schema(DESCRIPTOR_FIELDS))
    keep = [c for c in batch.column_names if c not in descriptors.column_names]
    return pa.Table.from_arrays(
        [batch.column(c) for c in keep] + descriptors.columns,
        names=keep + descriptors.column_names,
    )

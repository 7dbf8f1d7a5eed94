"""Benchmark: our CPU descriptor operator vs a plain OpenCV loop, on the pool's videos.

The reference is what one would write by hand: `cv2.VideoCapture`, read every frame, keep
the uniformly sampled ones, gray + 224x224, Farneback with GDO's parameters, mean magnitude.
Printed: per-video time of each, the largest |motion - reference| when the reference runs on
our decoded frames (must be <= 1e-6: same arithmetic), and when it decodes with OpenCV itself
(different decoder / colour conversion, so a small difference is expected).

    python bench/motion.py --videos 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from operators.media import read_video_frames, uniform_indices  # noqa: E402
from operators.motion import MotionConfig, gray_frames, motion  # noqa: E402
from ray_jobs.synth import synthesize  # noqa: E402


def reference_motion_from_grays(grays: list[np.ndarray]) -> float:
    values = []
    for prev, nxt in zip(grays[:-1], grays[1:], strict=True):
        flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 2, 15, 2, 5, 1.1, 0)
        magnitude, _ = cv2.cartToPolar(flow[..., 0], flow[..., 1])
        values.append(float(magnitude.astype(np.float64).mean()))
    return float(np.mean(values)) if values else 0.0


def reference_motion(path: str, frames: int = 8) -> float:
    """Plain OpenCV: decode everything with VideoCapture, sample, gray, resize, Farneback."""
    capture = cv2.VideoCapture(path)
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    capture.release()
    picks = [decoded[i] for i in uniform_indices(len(decoded), frames)]
    grays = [
        cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (224, 224), interpolation=cv2.INTER_AREA)
        for f in picks
    ]
    return reference_motion_from_grays(grays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--pool", default="/tmp/mmcurate_bench_motion")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if not os.path.exists(os.path.join(args.pool, "pool.jsonl")):
        synthesize(max(200, args.videos * 3), args.pool, seed=1, parallel=False)
    media = os.path.join(args.pool, "media")
    paths = sorted(
        os.path.join(root, n)
        for root, _, names in os.walk(media)
        for n in names
        if n.endswith(".mp4")
    )
    paths = [p for p in paths if os.path.getsize(p) > 1000][: args.videos]
    config = MotionConfig()
    ours, same_frames, opencv = [], [], []
    t_ours = t_ref = 0.0
    for path in paths:
        started = time.perf_counter()
        frames, _ = read_video_frames(path, config.frames)
        grays = gray_frames(frames, config.size)
        value = motion(grays, config)
        t_ours += time.perf_counter() - started
        started = time.perf_counter()
        ref = reference_motion(path, config.frames)
        t_ref += time.perf_counter() - started
        ours.append(value)
        same_frames.append(reference_motion_from_grays(grays))
        opencv.append(ref)
    ours, same_frames, opencv = map(np.array, (ours, same_frames, opencv))
    print(
        json.dumps(
            {
                "videos": len(paths),
                "ours_ms_per_video": round(1000 * t_ours / len(paths), 2),
                "opencv_loop_ms_per_video": round(1000 * t_ref / len(paths), 2),
                "max_abs_diff_same_frames": float(np.abs(ours - same_frames).max()),
                "max_abs_diff_opencv_decode": float(np.abs(ours - opencv).max()),
                "max_rel_diff_opencv_decode": float(
                    (np.abs(ours - opencv) / np.maximum(opencv, 1e-9)).max()
                ),
                "mean_motion": float(ours.mean()),
                "load_avg_1m": round(os.getloadavg()[0], 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Video decoding: the one-pass path (frame count in the container) and the counting path
(no count, e.g. Matroska) give the frames a plain full decode gives at the same indices."""

import av
import numpy as np
import pytest

from operators.media import MediaError, read_video_frames, uniform_indices
from ray_jobs import synthetic_media as sm


def _all_frames(path: str) -> np.ndarray:
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_sampled_frames_equal_a_full_decode_at_the_same_indices(tmp_path, suffix):
    frames = sm.render_video_frames(
        {"shape": "square", "color": "blue", "x": 20, "y": 32, "r": 10}, "right", 12
    )
    path = str(tmp_path / f"v{suffix}")
    sm.save_video(frames, path, fps=8)
    with av.open(path) as container:
        counted = container.streams.video[0].frames
    assert (counted == 12) if suffix == ".mp4" else (counted == 0)  # both paths are exercised
    reference = _all_frames(path)
    for count in (1, 5, 12, 20):
        got, facts = read_video_frames(path, count)
        assert np.array_equal(got, reference[uniform_indices(12, count)])
        assert (facts.width, facts.height, facts.num_frames) == (64, 64, 12)
        assert facts.fps == 8.0 and facts.duration == pytest.approx(1.5)


def test_a_truncated_video_is_a_media_error(tmp_path):
    path = tmp_path / "broken.mp4"
    sm.save_video(np.zeros((4, 64, 64, 3), np.uint8), str(path))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MediaError, match="broken.mp4"):
        read_video_frames(str(path), 4)

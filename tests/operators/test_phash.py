"""Media fingerprints: copies are close, different pictures far; grid-LSH keys agree."""

from __future__ import annotations

import numpy as np
from PIL import Image

from operators.phash import (
    MediaHashConfig,
    grid_keys,
    hamming,
    media_hash,
    phash_frame,
    thumbnail,
)
from ray_jobs import synthetic_media as sm


def _scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    objects = [
        {
            "shape": str(rng.choice(sm.SHAPES)),
            "color": str(rng.choice(list(sm.COLORS))),
            "x": int(rng.integers(12, 52)),
            "y": int(rng.integers(12, 52)),
            "r": int(rng.integers(6, 14)),
        }
        for _ in range(4)
    ]
    return sm.render_shapes(objects, 64), sm.render_shapes(objects, 80)


def _bits(value: int) -> int:
    return bin(value).count("1")


def test_resized_jpeg_copy_is_close_and_other_pictures_are_far(tmp_path):
    near, far, near_thumbs, far_thumbs = [], [], [], []
    for seed in range(20):
        original, bigger = _scene(seed)
        path = tmp_path / f"{seed}.jpg"
        Image.fromarray(bigger).save(path, format="JPEG", quality=85)
        config = MediaHashConfig()
        kind, words, thumbs = media_hash(str(path), "image", config)
        assert kind == 1
        assert np.array_equal(thumbs[:192], thumbs[192:384])  # one frame, repeated
        near.append(_bits(phash_frame(original) ^ int(words[0])))
        far.append(_bits(phash_frame(original) ^ phash_frame(_scene(seed + 100)[0])))
        other = thumbnail(_scene(seed + 100)[0], config.thumb).astype(int)
        near_thumbs.append(np.abs(thumbnail(original, 8).astype(int) - thumbs[:192]).mean())
        far_thumbs.append(np.abs(thumbnail(original, 8).astype(int) - other).mean())
    assert max(near) <= 0.15 * 64
    assert np.median(far) >= 20
    assert max(near_thumbs) <= config.max_thumb_image < min(far_thumbs)


def test_video_hash_and_hamming(tmp_path):
    frames = sm.render_video_frames(
        {"shape": "circle", "color": "red", "x": 20, "y": 32, "r": 10}, "right", 10
    )
    path = tmp_path / "v.mp4"
    sm.save_video(frames, str(path))
    kind, words, thumbs = media_hash(str(path), "video", MediaHashConfig(frames=4))
    assert kind == 2
    expected = [phash_frame(f) for f in frames[[0, 3, 6, 9]]]
    assert hamming(words, np.array(expected, dtype=np.uint64)) <= 0.1 * 256
    reference = np.concatenate([thumbnail(f, 8) for f in frames[[0, 3, 6, 9]]]).astype(int)
    assert np.abs(thumbs.astype(int) - reference).mean() <= MediaHashConfig().max_thumb_video


def test_grid_keys_collide_for_close_thumbnails_and_not_for_far_ones():
    config = MediaHashConfig()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (200, config.thumb_size()))
    close = np.clip(base + rng.integers(-2, 3, base.shape), 0, 255)
    far = rng.integers(0, 256, base.shape)
    thumbs = np.concatenate([base, close, far]).astype(np.uint8)
    keys = grid_keys(np.ones(600, np.int8), thumbs, config)
    assert keys.shape == (600, config.bands)
    shared_close = (keys[:200] == keys[200:400]).any(axis=1).mean()
    shared_far = (keys[:200] == keys[400:]).any(axis=1).mean()
    assert shared_close >= 0.99 and shared_far <= 0.01
    # Per band, d = 2 levels: the chance to share is prod(1 - d / step) ~ (1 - 2/32)^8 = 0.6.
    assert 0.4 <= (keys[:200] == keys[200:400]).mean() <= 0.8
    video = grid_keys(np.full(1, 2, np.int8), thumbs[:1], config)
    assert not np.any(video[0] == keys[0])  # kinds never share a bucket

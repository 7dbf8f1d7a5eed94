"""Perceptual hashes: copies are close, different pictures far; bit-sampling keys agree."""

from __future__ import annotations

import numpy as np
from PIL import Image

from operators.phash import (
    MediaHashConfig,
    bit_sample_keys,
    hamming,
    media_hash,
    phash_frame,
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
    near, far = [], []
    for seed in range(20):
        original, bigger = _scene(seed)
        path = tmp_path / f"{seed}.jpg"
        Image.fromarray(bigger).save(path, format="JPEG", quality=85)
        kind, words = media_hash(str(path), "image", MediaHashConfig())
        assert kind == 1
        near.append(_bits(phash_frame(original) ^ int(words[0])))
        far.append(_bits(phash_frame(original) ^ phash_frame(_scene(seed + 100)[0])))
    assert max(near) <= 0.15 * 64
    assert np.median(far) >= 20


def test_video_hash_and_hamming(tmp_path):
    frames = sm.render_video_frames(
        {"shape": "circle", "color": "red", "x": 20, "y": 32, "r": 10}, "right", 10
    )
    path = tmp_path / "v.mp4"
    sm.save_video(frames, str(path))
    kind, words = media_hash(str(path), "video", MediaHashConfig(frames=4))
    assert kind == 2
    expected = [phash_frame(f) for f in frames[[0, 3, 6, 9]]]
    assert hamming(words, np.array(expected, dtype=np.uint64)) <= 0.1 * 256


def test_bit_sample_keys_identical_hashes_share_every_band():
    config = MediaHashConfig()
    words = np.zeros((3, 4), dtype=np.uint64)
    words[:, 0] = [0x0123456789ABCDEF, 0x0123456789ABCDEF, 0xFEDCBA9876543210]
    keys = bit_sample_keys(np.array([1, 1, 1]), words, config)
    assert keys.shape == (3, config.bands)
    assert np.array_equal(keys[0], keys[1])
    assert not np.any(keys[0] == keys[2])  # complement differs in every sampled bit
    video = bit_sample_keys(np.array([2]), words[:1], config)
    assert not np.any(video[0] == keys[0])  # kinds never share a bucket

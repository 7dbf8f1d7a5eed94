"""Media fingerprints: copies are close, different pictures far (also one bar step apart);
grid-LSH keys agree."""

from __future__ import annotations

import numpy as np
from PIL import Image

from operators.media import read_video_frames
from operators.phash import (
    MediaHashConfig,
    gray_blocks,
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
    original = sm.render_shapes(objects, 64)
    return original, sm.resize(original, 80)


def _bits(value: int) -> int:
    return bin(value).count("1")


def test_resized_jpeg_copy_is_close_and_other_pictures_are_far(tmp_path):
    near, far, near_thumbs, far_thumbs, near_blocks = [], [], [], [], []
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
        blocks = thumbs[config.colour_size() :][:256].astype(int)
        near_blocks.append(np.abs(gray_blocks(original, config.block).astype(int) - blocks).max())
    assert max(near) <= 0.15 * 64
    assert np.median(far) >= 20
    assert max(near_thumbs) <= config.max_thumb_image < min(far_thumbs)
    assert max(near_blocks) <= config.max_block


def _fingerprint(path, pixels: np.ndarray, quality: int | None = None) -> np.ndarray:
    Image.fromarray(pixels).save(path, format="JPEG" if quality else "PNG", quality=quality or 0)
    return media_hash(str(path), "image", MediaHashConfig())[2].astype(int)


def test_a_chart_one_bar_step_apart_is_not_a_copy_but_its_resized_jpeg_is(tmp_path):
    config = MediaHashConfig()
    colour = config.colour_size()
    for k, values in enumerate(([3, 7, 5], [1, 9, 4], [8, 2, 6])):
        original = _fingerprint(tmp_path / f"{k}.png", sm.render_chart(values))
        copy = _fingerprint(tmp_path / f"{k}c.jpg", sm.resize(sm.render_chart(values), 80), 85)
        taller = _fingerprint(tmp_path / f"{k}t.png", sm.render_chart([values[0] + 1, *values[1:]]))
        copy_diff, step_diff = np.abs(copy - original), np.abs(taller - original)
        assert copy_diff[:colour].mean() <= config.max_thumb_image
        assert copy_diff[colour:].max() <= config.max_block
        # The thumbnail alone barely sees one bar step; the block map does.
        assert step_diff[:colour].mean() < 2 * config.max_thumb_image
        assert step_diff[colour:].max() > config.max_block


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
    # The pixel part is exactly the thumbnails, then the block maps, of the 4 decoded frames.
    decoded, _ = read_video_frames(str(path), 4)
    assert len(decoded) == 4
    expected_pixels = np.concatenate(
        [thumbnail(f, 8) for f in decoded] + [gray_blocks(f, 16) for f in decoded]
    )
    assert np.array_equal(thumbs, expected_pixels)
    # Decoded frames stay close to the rendered ones (H.264 crf 18).
    reference = np.concatenate([thumbnail(f, 8) for f in frames[[0, 3, 6, 9]]]).astype(int)
    assert np.abs(thumbs[: len(reference)].astype(int) - reference).mean() <= 2.0


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

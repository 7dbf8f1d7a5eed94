"""Media fingerprints of images and videos, and LSH keys over them.

A fingerprint is three descriptors per frame (`frames` uniformly sampled video frames; an image
is one frame, repeated to the same length):
- pHash (Zauner 2010, "Implementation and Benchmarking of Perceptual Image Hash Functions"):
  gray -> 32x32 (area resampling) -> 2-D DCT -> the 8x8 lowest frequencies -> one bit per
  coefficient, set when it is above their median. Structure, blind to brightness and colour.
- a colour thumbnail: RGB -> `thumb` x `thumb` (area resampling), uint8. Absolute colour and
  layout, the part pHash drops: on flat pictures (one object on a plain background) the
  median of the DCT block sits among near-zero coefficients, so pHash bits of a re-encoded
  copy flip (video copies of the synthetic pool: up to 34% of the bits) while distinct
  pictures with the same layout get the same bits.
- a grey block map: gray -> `block` x `block` (area resampling), uint8. The colour thumbnail
  averages a small local change away (a chart's bar one step taller moves an 8x8 thumbnail by
  about 1 grey level, no more than re-encoding does); the block map keeps it in one cell, and
  the cell's difference is compared by its maximum, which resizing and JPEG noise (spread
  thinly over every cell) do not reach.
Two media are copies when all three distances are small: pHash Hamming <= `max_phash` of the
bits, thumbnail mean absolute difference <= `max_thumb_image` / `max_thumb_video` grey levels
and block-map maximum absolute difference <= `max_block` grey levels.
bench/media_hash.py measures both distributions on the synthetic pool (docs/dedup.md).

Candidates come from grid LSH on the thumbnail (an L1 LSH, as in Datar et al. 2004 with
random shifts): band b reads `rows` random thumbnail values, each shifted by a random offset
and quantized by `step`; two thumbnails whose values differ by d_i share the band with
probability prod(1 - d_i / step). A copy (d ~ 1-5 levels) shares most of 16 bands; candidates
are then verified on the exact distances, so a collision never merges dissimilar media.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operators.media import load_image, read_video_frames
from operators.minhash import mix64

__all__ = [
    "HASH_WORDS",
    "MediaHashConfig",
    "gray_blocks",
    "grid_keys",
    "hamming",
    "media_hash",
    "phash_frame",
    "thumbnail",
]

HASH_WORDS = 4  # uint64 pHash words kept per media (images use 1, videos `frames` <= 4)
KIND_IMAGE, KIND_VIDEO = 1, 2


@dataclass(frozen=True)
class MediaHashConfig:
    """Media near-duplicate settings (help on each field)."""

    frames: int = 4  # key frames per video (<= 4), sampled uniformly
    thumb: int = 8  # colour thumbnail side in pixels (thumb x thumb x 3 per frame)
    max_phash: float = 0.4  # copies: pHash Hamming distance / bits at most this
    max_thumb_image: float = 2.0  # copies: image thumbnail mean |difference| (grey levels)
    max_thumb_video: float = 0.75  # copies: the same for videos (4 frames average out noise)
    block: int = 16  # grey block map side in pixels (block x block per frame)
    max_block: float = 16.0  # copies: largest |difference| of one block-map cell (grey levels)
    near_text_scale: float = 0.0  # share of those limits for near-identical text (0: same media)
    bands: int = 16  # grid-LSH bands
    rows: int = 8  # thumbnail values read per band
    step: float = 32.0  # grid-LSH quantization step (grey levels)
    seed: int = 7  # seed of the sampled positions and offsets

    def colour_size(self) -> int:
        """Bytes of the colour thumbnails (all frames): the first part of a fingerprint."""
        return min(self.frames, HASH_WORDS) * self.thumb * self.thumb * 3

    def thumb_size(self) -> int:
        """Bytes of a fingerprint's pixel part: colour thumbnails, then grey block maps."""
        return self.colour_size() + min(self.frames, HASH_WORDS) * self.block * self.block


def phash_frame(rgb: np.ndarray) -> int:
    """64-bit DCT pHash of one RGB or gray image (uint8)."""
    import cv2

    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])


def thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    """RGB (H, W, 3) uint8 -> (side * side * 3,) uint8 by area resampling."""
    import cv2

    small = cv2.resize(rgb.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8).ravel()


def gray_blocks(rgb: np.ndarray, side: int) -> np.ndarray:
    """RGB (H, W, 3) uint8 -> (side * side,) uint8 grey block map by area resampling."""
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8).ravel()


def _pixels(frames: list[np.ndarray], config: MediaHashConfig) -> np.ndarray:
    """The pixel part of a fingerprint: every frame's thumbnail, then every frame's blocks."""
    colour = [thumbnail(frame, config.thumb) for frame in frames]
    return np.concatenate(colour + [gray_blocks(frame, config.block) for frame in frames])


def media_hash(
    path: str, media_type: str, config: MediaHashConfig
) -> tuple[int, np.ndarray, np.ndarray]:
    """(kind, words, pixels): kind 1 image / 2 video, HASH_WORDS uint64 pHash words (unused
    words are 0) and the pixel part (`MediaHashConfig.thumb_size` bytes: colour thumbnails,
    then grey block maps) of `frames` frames (an image repeats its one).

    Raises `operators.media.MediaError` for media that cannot be decoded.
    """
    count = min(config.frames, HASH_WORDS)
    words = np.zeros(HASH_WORDS, dtype=np.uint64)
    if media_type == "image":
        image = load_image(path)
        words[0] = phash_frame(image)
        return KIND_IMAGE, words, _pixels([image] * count, config)
    frames, _ = read_video_frames(path, count)
    # Fewer frames than asked: repeat the last, so every video hash has the same length.
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    for k, index in enumerate(picks):
        words[k] = phash_frame(frames[index])
    return KIND_VIDEO, words, _pixels([frames[index] for index in picks], config)


def _popcount64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distance between hash rows (..., HASH_WORDS) of uint64."""
    return _popcount64(np.bitwise_xor(a, b)).sum(axis=-1)


def _grid(config: MediaHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(positions, offsets), each (bands, rows): the thumbnail values each band reads."""
    rng = np.random.default_rng(config.seed)
    positions = rng.integers(0, config.colour_size(), (config.bands, config.rows))
    return positions, rng.uniform(0, config.step, (config.bands, config.rows))


def grid_keys(kinds: np.ndarray, thumbs: np.ndarray, config: MediaHashConfig) -> np.ndarray:
    """Band keys (n, bands) uint64 from thumbnails (n, thumb_size); kind and band folded in."""
    positions, offsets = _grid(config)
    levels = np.floor((thumbs[:, positions].astype(np.float64) + offsets) / config.step)
    weights = np.uint64(1) << (np.uint64(5) * np.arange(config.rows, dtype=np.uint64))
    packed = (levels.astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)  # (n, bands)
    band = np.arange(config.bands, dtype=np.uint64) << np.uint64(48)
    kind = kinds.astype(np.uint64)[:, None] << np.uint64(56)
    return mix64(packed ^ band ^ kind)

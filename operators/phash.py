"""Perceptual hashes of images and videos, and bit-sampling LSH keys over them.

pHash (Zauner 2010, "Implementation and Benchmarking of Perceptual Image Hash Functions"):
gray image -> 32x32 (area resampling) -> 2-D DCT -> the 8x8 lowest frequencies -> one bit per
coefficient, set when it is above their median. A resized or re-encoded copy keeps its low
frequencies, so its hash differs in a few bits; different pictures differ in about half.

A video's hash is the pHashes of `frames` uniformly sampled frames, concatenated (frames * 64
bits), so two videos are close when their key frames are close in order.

Bit-sampling LSH (Indyk & Motwani 1998) for Hamming distance: band i reads `rows` fixed random
bit positions; two hashes at distance d share a band with probability (1 - d / L)^rows. Candidate
pairs are then verified on the exact distance, so a collision never merges dissimilar media.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operators.media import load_image, read_video_frames
from operators.minhash import mix64

__all__ = [
    "HASH_WORDS",
    "MediaHashConfig",
    "bit_sample_keys",
    "hamming",
    "media_hash",
    "phash_frame",
]

HASH_WORDS = 4  # uint64 words kept per hash (images use 1, videos `frames` <= 4)
KIND_IMAGE, KIND_VIDEO = 1, 2


@dataclass(frozen=True)
class MediaHashConfig:
    """Media near-duplicate settings (help on each field)."""

    frames: int = 4  # key frames per video (<= 4), sampled uniformly
    max_distance: float = 0.15  # Hamming distance / bits at or below which media are copies
    near_text_distance: float = 0.0  # the same, for rows whose text is only near-identical
    bands: int = 16  # bit-sampling bands
    rows: int = 12  # bits per band
    seed: int = 7  # seed of the sampled bit positions


def phash_frame(rgb: np.ndarray) -> int:
    """64-bit DCT pHash of one RGB or gray image (uint8)."""
    import cv2

    gray = rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])


def media_hash(path: str, media_type: str, config: MediaHashConfig) -> tuple[int, np.ndarray]:
    """(kind, words): kind 1 image / 2 video, and HASH_WORDS uint64 (unused words are 0).

    Raises `operators.media.MediaError` for media that cannot be decoded.
    """
    words = np.zeros(HASH_WORDS, dtype=np.uint64)
    if media_type == "image":
        words[0] = phash_frame(load_image(path))
        return KIND_IMAGE, words
    frames, _ = read_video_frames(path, min(config.frames, HASH_WORDS))
    # Fewer frames than asked: repeat the last, so every video hash has the same length.
    picks = np.linspace(0, len(frames) - 1, min(config.frames, HASH_WORDS)).round().astype(int)
    for k, index in enumerate(picks):
        words[k] = phash_frame(frames[index])
    return KIND_VIDEO, words


def _popcount64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distance between hash rows (..., HASH_WORDS) of uint64."""
    return _popcount64(np.bitwise_xor(a, b)).sum(axis=-1)


def _bit_positions(kind: int, config: MediaHashConfig) -> np.ndarray:
    bits = 64 if kind == KIND_IMAGE else 64 * min(config.frames, HASH_WORDS)
    rng = np.random.default_rng([config.seed, kind])
    return np.stack([rng.choice(bits, config.rows, replace=False) for _ in range(config.bands)])


def bit_sample_keys(kinds: np.ndarray, words: np.ndarray, config: MediaHashConfig) -> np.ndarray:
    """Band keys (n, bands) uint64 from hashes (n, HASH_WORDS); kind and band folded in."""
    n = len(kinds)
    keys = np.zeros((n, config.bands), dtype=np.uint64)
    bits = np.unpackbits(words.astype(">u8").view(np.uint8).reshape(n, -1), axis=1)
    weights = np.uint64(1) << np.arange(config.rows, dtype=np.uint64)
    for kind in (KIND_IMAGE, KIND_VIDEO):
        mask = kinds == kind
        if not mask.any():
            continue
        positions = _bit_positions(kind, config)  # (bands, rows)
        sampled = bits[mask][:, positions].astype(np.uint64)  # (m, bands, rows)
        packed = (sampled * weights).sum(axis=2)
        salt = (np.uint64(kind) << np.uint64(56)) | (np.arange(config.bands, dtype=np.uint64) << 48)
        keys[mask] = mix64(packed | salt)
    return keys

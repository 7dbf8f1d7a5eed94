"""PISM: progressive image masking as a difficulty measure (Qi et al., AAAI 2026; reference
code qijianyu277/DifficultySampling).

The image is masked at ratios λ = 0, 0.1, ..., 0.9 with K random masks per ratio; the model
answers each masked copy and accuracy(λ) is the share answered correctly (by the row's
reference answer). λ* is the first ratio whose accuracy falls below τ (0.1):

    λ* = min{λ : acc(λ) < τ}
    unsolved  if λ* = 0 (wrong on the unmasked image)
    hard      if λ* <= 0.4
    medium    if 0.4 < λ* < 0.7
    easy      if λ* >= 0.7, or if no ratio fails (then pism_lambda = 1.0)

A mask is a black rectangle covering the area ratio λ at a random position (what the
reference code does), or, as the paper words it, a random λ share of the vision patches
set to black. For a video the same mask covers every frame. The search stops per sample as
soon as λ* is found, so easy samples cost all ratios and unsolved ones only the first.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PISM_LABELS",
    "PismConfig",
    "mask_media",
    "patch_mask",
    "pism_label",
    "rectangle_mask",
    "search_lambda",
]

PISM_LABELS = ("easy", "medium", "hard", "unsolved")
NEVER_FAILS = 1.0


@dataclass(frozen=True)
class PismConfig:
    """PISM settings; defaults follow the paper."""

    masks_per_ratio: int = 10  # K random masks per ratio
    tau: float = 0.1  # accuracy threshold that defines λ*
    ratios: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(10))
    mode: str = "rectangle"  # "rectangle" (reference code) or "patch" (paper's wording)
    patch_size: int = 14  # pixels per patch in "patch" mode
    seed: int = 0


def rectangle_mask(height: int, width: int, ratio: float, rng: np.random.Generator):
    """Boolean (H, W) mask: one axis-aligned rectangle of area ~ratio * H * W, randomly placed.

    The rectangle keeps the image's aspect ratio (sides scaled by sqrt(ratio)).
    """
    mask = np.zeros((height, width), dtype=bool)
    if ratio <= 0:
        return mask
    h = min(height, max(1, int(round(height * np.sqrt(ratio)))))
    w = min(width, max(1, int(round(width * np.sqrt(ratio)))))
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    mask[top : top + h, left : left + w] = True
    return mask


def patch_mask(height: int, width: int, ratio: float, rng: np.random.Generator, patch: int = 14):
    """Boolean (H, W) mask covering round(ratio * n) of the n grid patches, chosen at random."""
    rows, cols = -(-height // patch), -(-width // patch)
    n = rows * cols
    chosen = rng.choice(n, size=int(round(ratio * n)), replace=False)
    grid = np.zeros(n, dtype=bool)
    grid[chosen] = True
    full = np.repeat(np.repeat(grid.reshape(rows, cols), patch, axis=0), patch, axis=1)
    return full[:height, :width]


def mask_media(media: list[np.ndarray], ratio: float, config: PismConfig, key: str, k: int):
    """Masked copies of a row's media arrays ((H, W, 3) images or (T, H, W, 3) videos).

    Seeded by (config.seed, row key, ratio, k), so a rerun masks the same pixels.
    """
    rng = np.random.default_rng([config.seed, zlib.crc32(key.encode()), int(ratio * 100), k])
    out = []
    for array in media:
        height, width = array.shape[-3], array.shape[-2]
        if config.mode == "patch":
            mask = patch_mask(height, width, ratio, rng, config.patch_size)
        else:
            mask = rectangle_mask(height, width, ratio, rng)
        masked = array.copy()
        masked[..., mask, :] = 0
        out.append(masked)
    return out


def pism_label(lam: float) -> str:
    """The paper's band for λ* (NEVER_FAILS = 1.0 when no ratio fails).

    >>> [pism_label(x) for x in (0.0, 0.3, 0.4, 0.5, 0.7, 1.0)]
    ['unsolved', 'hard', 'hard', 'medium', 'easy', 'easy']
    """
    if lam <= 0.0:
        return "unsolved"
    if lam <= 0.4 + 1e-9:
        return "hard"
    if lam < 0.7 - 1e-9:
        return "medium"
    return "easy"


def search_lambda(
    keys: list[str],
    accuracy: Callable[[list[int], float], np.ndarray],
    config: PismConfig,
) -> np.ndarray:
    """λ* per sample; `accuracy(indices, ratio)` returns acc for those samples at that ratio.

    Samples drop out of the search at their first failing ratio (early stop).
    """
    lam = np.full(len(keys), NEVER_FAILS)
    active = list(range(len(keys)))
    for ratio in config.ratios:
        if not active:
            break
        acc = np.asarray(accuracy(active, ratio), dtype=float)
        failed = acc < config.tau
        for i, fail in zip(active, failed, strict=True):
            if fail:
                lam[i] = ratio
        active = [i for i, fail in zip(active, failed, strict=True) if not fail]
    return lam

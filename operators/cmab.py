"""CMAB: cross-modal attention balance as a difficulty measure (Qi et al., AAAI 2026;
reference code qijianyu277/DifficultySampling).

For each generated token t and decoder layer l, r(t, l) = attention mass on image tokens /
attention mass on text tokens (heads averaged). The sample's balance is

    cmab_ratio = mean_t  exp( mean_{l in 2..L-1} log r(t, l) )

the geometric mean over layers 2..L-1 (1-based: the first and last layers are left out;
a model with fewer than 3 layers uses all of them), averaged over generated tokens. Bands:
hard if cmab_ratio in [0.4, 1.6], medium if in [0.1, 0.4) or (1.6, 1.9], easy otherwise.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CMAB_LABELS", "cmab_label", "cmab_ratio", "middle_layers"]

CMAB_LABELS = ("easy", "medium", "hard")
FLOOR = 1e-8  # ratios are floored before the log so a zero image mass stays finite


def middle_layers(num_layers: int) -> slice:
    """0-based slice of layers 2..L-1 (1-based), or all layers when there are fewer than 3."""
    return slice(1, num_layers - 1) if num_layers >= 3 else slice(0, num_layers)


def cmab_ratio(ratios: np.ndarray) -> float:
    """ratios: (num_layers, T) for the T generated tokens of one sample; NaN when T == 0.

    >>> round(cmab_ratio(np.array([[9.0], [1.0], [4.0], [9.0]])), 6)  # layers 2, 3 -> sqrt(4)
    2.0
    """
    ratios = np.asarray(ratios, dtype=float)
    if ratios.ndim != 2 or ratios.shape[1] == 0:
        return float("nan")
    chosen = ratios[middle_layers(ratios.shape[0])]
    per_token = np.exp(np.log(np.maximum(chosen, FLOOR)).mean(axis=0))
    return float(per_token.mean())


def cmab_label(ratio: float) -> str | None:
    """The paper's band for a cmab_ratio (None for NaN).

    >>> [cmab_label(x) for x in (0.05, 0.1, 0.4, 1.0, 1.6, 1.9, 2.5)]
    ['easy', 'medium', 'hard', 'hard', 'hard', 'medium', 'easy']
    """
    if not np.isfinite(ratio):
        return None
    if 0.4 <= ratio <= 1.6:
        return "hard"
    if 0.1 <= ratio < 0.4 or 1.6 < ratio <= 1.9:
        return "medium"
    return "easy"

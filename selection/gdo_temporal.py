"""GDO's temporal-demand label (Wu & Zhao 2026; rujiewu/GDO) from what the score stage wrote.

GDO defines temporal demand as a label: the proxy answers "Temporal" or "Static" to a fixed
prompt about a video's question, read as 1 / 0 and 0.5 for anything else; images and text are
0. Its strata read it as Temporal (>= 0.75) / Static (<= 0.25) / Mixed, and its merged quality
adds 0.12 x it. The score stage writes two different quantities, each under its own name:

- `temporal_prompted`: that label itself (operators/model_descriptors.py, `prompted_temporal`);
- `temporal_loss_gap`: the measured variant, loss(frames shuffled) - loss(frames in order), in
  nats per answer token; unbounded and often negative for a weak proxy.

`gdo_temporal_label` is the one GDO reads, per row, from the first source that has a value:
the prompted label, else the loss gap by `TemporalRule` (gap >= `temporal_gap` -> 1 Temporal,
gap <= `static_gap` -> 0 Static, between -> 0.5 Mixed), else NaN (no label: the strata fall
back to GDO's keyword pattern). Non-video rows are 0, as in GDO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from selection.common import float_column, has_column, string_column

__all__ = ["LABEL_COLUMN", "SOURCE_COLUMNS", "TemporalRule", "gdo_temporal_label"]

LABEL_COLUMN = "gdo_temporal_label"
SOURCE_COLUMNS = ("temporal_prompted", "temporal_loss_gap")


@dataclass(frozen=True)
class TemporalRule:
    """Thresholds (nats per answer token) that turn the measured loss gap into GDO's label.

    A design choice, not a paper value: shuffling the frames of a question about motion or
    order should cost the proxy clearly more than noise (>= 0.05 nats), while a question about
    one frame's content costs nothing (<= 0.01); what lies between is Mixed.
    """

    temporal_gap: float = 0.05
    static_gap: float = 0.01

    def __post_init__(self) -> None:
        if not self.static_gap < self.temporal_gap:
            raise ValueError(
                f"static_gap ({self.static_gap}) must be below temporal_gap ({self.temporal_gap})"
            )

    def label(self, gap: np.ndarray) -> np.ndarray:
        """1 / 0.5 / 0 per finite gap, NaN where the gap is NaN."""
        out = np.where(gap >= self.temporal_gap, 1.0, np.where(gap <= self.static_gap, 0.0, 0.5))
        return np.where(np.isfinite(gap), out, np.nan)


def gdo_temporal_label(table: pa.Table, rule: TemporalRule) -> tuple[np.ndarray, dict]:
    """GDO's 0 / 0.5 / 1 label per row (NaN where no source has a value), and the number of
    rows each source labelled (for the manifest)."""
    n = table.num_rows
    video = np.asarray(
        string_column(table, "media_type", "image").to_numpy(zero_copy_only=False) == "video"
    )
    label = np.full(n, np.nan)
    counts = {}
    if has_column(table, "temporal_prompted"):
        prompted = float_column(table, "temporal_prompted")
        take = video & np.isfinite(prompted)
        label[take] = np.clip(prompted[take], 0.0, 1.0)
        counts["temporal_prompted"] = int(take.sum())
    if has_column(table, "temporal_loss_gap"):
        derived = rule.label(float_column(table, "temporal_loss_gap"))
        take = video & ~np.isfinite(label) & np.isfinite(derived)
        label[take] = derived[take]
        counts["temporal_loss_gap"] = int(take.sum())
    label[~video] = 0.0
    counts["not_video"] = int((~video).sum())
    counts["unlabelled_video"] = int((video & ~np.isfinite(label)).sum())
    return label, counts

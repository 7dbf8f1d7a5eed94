"""mmSSR selection: round-robin over capabilities, style x source bins (Cream of the Crop,
arXiv 2503.13383; reference lyumengyao/mmssr llava/select/mmssr.py).

budget = ratio x pool. Repeat until the budget is full: every active capability gets
remaining / active rows; for one capability, the rows not yet chosen with a score above the
threshold are sorted by that score and binned by "style+source" (a row with several styles
sits in several bins); bins go from smallest to largest, each taking max(budget // bins, 1)
plus the debt the smaller bins could not fill, top-scored first; a capability that yields
nothing is dropped. No embeddings.

One deliberate change: a bin never takes more than the turn's remaining budget (the
reference's carried debt can overshoot it when multi-style rows were already taken), so the
budget is met exactly.

Deterministic where the reference is not: score ties break by a seeded permutation, bins of
equal size by label, the active list keeps its order, and within a bin rows go by score (the
reference's melt puts rows by style slot first). The loop ends when no capability is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from selection.common import (
    Subset,
    eligible_mask,
    float_column,
    require_columns,
    resolve_budget,
    sorted_unique,
    string_column,
)
from selection.synthetic import CAPABILITIES

__all__ = ["MMSSRConfig", "StyleBins", "mmssr_select", "style_bins"]


@dataclass(frozen=True)
class MMSSRConfig:
    """mmSSR selection: which capabilities, the budget and the score threshold."""

    capabilities: tuple[str, ...] = CAPABILITIES  # read from columns cap_<name>
    budget: float = 0.3  # a pool fraction (the reference's ratio) or a row count
    threshold: float = 0.0  # a row is a candidate for a capability when its score > this
    drop_duplicates: bool = True


@dataclass
class StyleBins:
    """Rows x bins in CSR form: row r's bins are bins[offsets[r]:offsets[r+1]]."""

    offsets: np.ndarray
    bins: np.ndarray
    labels: list[str]


def style_bins(table: pa.Table) -> StyleBins:
    """Bin "style+source" per row, each style once per row (mmSSR's parse_sty)."""
    styles = table.column("styles").combine_chunks().cast(pa.list_(pa.string()))
    styles = pc.fill_null(styles, pa.scalar([], styles.type))
    flat = pc.fill_null(pc.list_flatten(styles), "")
    parents = pc.list_parent_indices(styles).to_numpy().astype(np.int64)
    label = pc.binary_join_element_wise(
        pc.utf8_trim_whitespace(flat),
        pc.take(string_column(table, "source", "unknown"), pa.array(parents)),
        "+",
    )
    enc = pc.dictionary_encode(label)
    names = enc.dictionary.to_pylist()
    order = np.argsort(np.array(names, dtype=object), kind="stable")
    remap = np.empty(len(names), dtype=np.int64)
    remap[order] = np.arange(len(names))
    codes = (
        remap[enc.indices.to_numpy(zero_copy_only=False)] if len(names) else np.zeros(0, np.int64)
    )
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False) if len(flat) else np.zeros(0, bool)
    pairs = sorted_unique(parents[keep] * max(len(names), 1) + codes[keep])
    rows, bins = pairs // max(len(names), 1), pairs % max(len(names), 1)
    offsets = np.zeros(table.num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=table.num_rows), out=offsets[1:])
    return StyleBins(offsets=offsets, bins=bins, labels=[names[i] for i in order])


class _CapIndex:
    """One capability's candidates: (row, bin) pairs sorted by bin, then score desc, then tie."""

    def __init__(self, score: np.ndarray, cand: np.ndarray, sb: StyleBins, tie_rank: np.ndarray):
        rows = np.flatnonzero(cand)
        rows = rows[np.argsort(tie_rank[rows], kind="stable")]
        counts = sb.offsets[rows + 1] - sb.offsets[rows]
        pair_row = np.repeat(rows, counts)
        starts = np.repeat(sb.offsets[rows] - np.cumsum(counts) + counts, counts)
        pair_bin = (
            sb.bins[starts + np.arange(len(pair_row))] if len(pair_row) else np.zeros(0, np.int64)
        )
        _, srank = np.unique(-score[pair_row], return_inverse=True)
        order = np.argsort(pair_bin * (srank.max(initial=0) + 1) + srank, kind="stable")
        self.rows = pair_row[order]
        self.bounds = np.searchsorted(pair_bin[order], np.arange(len(sb.labels) + 1))
        self.alive = np.diff(self.bounds)  # per bin: candidates not chosen yet
        self.cursor = self.bounds[:-1].copy()  # per bin: everything before it is chosen

    def take(self, b: int, k: int, chosen: np.ndarray) -> np.ndarray:
        """The first k not-chosen rows of bin b in score order (the cursor skips dead rows)."""
        out, pos, end = [], int(self.cursor[b]), int(self.bounds[b + 1])
        while k > 0 and pos < end:
            window = self.rows[pos : min(end, pos + 2 * k + 64)]
            live = np.flatnonzero(~chosen[window])[:k]
            out.append(window[live])
            k -= len(live)
            pos = pos + (int(live[-1]) + 1 if k == 0 else len(window))
        self.cursor[b] = pos
        return np.concatenate(out) if out else np.zeros(0, np.int64)


def _select_for_cap(idx: _CapIndex, num: int, chosen: np.ndarray, on_pick) -> int:
    """One capability's turn: smallest bins first with carried debt. Returns rows taken."""
    live_bins = np.flatnonzero(idx.alive > 0)
    if len(live_bins) == 0:
        return 0
    order = live_bins[np.argsort(idx.alive[live_bins], kind="stable")]
    per_bin, debt, got = max(num // len(order), 1), 0, 0
    for b in order.tolist():
        if got >= num:
            break
        avail = int(idx.alive[b])
        k = min(per_bin + debt, avail, num - got)  # the reference may overshoot; we do not
        debt = max(per_bin + debt - avail, 0)
        if k > 0:
            on_pick(idx.take(b, k, chosen))
            got += k
    return got


def mmssr_select(table: pa.Table, config: MMSSRConfig = MMSSRConfig(), seed: int = 0) -> Subset:
    """Select by mmSSR; rows come back in the order they were picked."""
    cols = [f"cap_{c}" for c in config.capabilities]
    require_columns(table, [*cols, "styles", "source"], "mmSSR")
    mask, report = eligible_mask(table, config.drop_duplicates)
    target = resolve_budget(config.budget, int(mask.sum()))
    sb = style_bins(table)
    tie_rank = np.empty(table.num_rows, dtype=np.int64)
    tie_rank[np.random.default_rng(seed).permutation(table.num_rows)] = np.arange(table.num_rows)
    scores = {
        c: np.nan_to_num(float_column(table, col), nan=-np.inf)
        for c, col in zip(config.capabilities, cols, strict=True)
    }
    cands = {c: mask & (s > config.threshold) for c, s in scores.items()}
    index = {c: _CapIndex(scores[c], cands[c], sb, tie_rank) for c in config.capabilities}
    chosen = ~mask  # ineligible rows count as taken
    picked: list[np.ndarray] = []
    per_cap = {c: 0 for c in config.capabilities}

    def on_pick(rows: np.ndarray) -> None:
        chosen[rows] = True
        picked.append(rows)
        starts, ends = sb.offsets[rows], sb.offsets[rows + 1]
        bins = sb.bins[np.repeat(starts, ends - starts) + _ranges(ends - starts)]
        owner = np.repeat(rows, ends - starts)
        for c, idx in index.items():
            np.subtract.at(idx.alive, bins[cands[c][owner]], 1)

    active, total, rounds = list(config.capabilities), 0, 0
    while total < target and active:
        rounds += 1
        every, dropped = max((target - total) // len(active), 1), []
        for c in active:
            every = min(every, target - total)
            got = _select_for_cap(index[c], every, chosen, on_pick)
            per_cap[c] += got
            total += got
            if got == 0:
                dropped.append(c)
            if total >= target:
                break
        active = [c for c in active if c not in dropped]
    rows = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    report.update(
        method="mmssr",
        budget={"requested": config.budget, "count": target},
        threshold=config.threshold,
        rounds=rounds,
        selected=int(len(rows)),
        unmet=int(target - len(rows)),
        per_capability=per_cap,
        bins=len(sb.labels),
    )
    return Subset(rows=rows, stage=np.full(len(rows), "all", dtype=object), report=report)


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges: [0..l0), [0..l1), ..."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    return np.arange(total) - np.repeat(ends - lengths, lengths)

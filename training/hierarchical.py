"""The hierarchical plan of PISM / CMAB (Qi et al., AAAI 2026): SFT on easy + medium rows,
then GRPO on medium + hard rows, starting from the SFT model.

Which stratum a row is in comes from a column of the subset rows: `pism_label` by default
(or `cmab_label`, or the subset's own `stage` column when selection wrote the plan into it,
e.g. values "sft" / "grpo"). Medium rows are in both stages, as in the paper; PISM's
"unsolved" rows (wrong even unmasked) are in neither. Both stages keep the subset's order.

The two stages write `OUT/sft/` and `OUT/grpo/`; `merge_metrics` folds their logs into one
`OUT/metrics.jsonl` where GRPO's samples continue SFT's count (and each record names its
stage), so one curve shows the whole plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from operators import storage
from training.evaluate import read_metrics, write_metrics

__all__ = ["HierarchicalConfig", "merge_metrics", "split_stages"]


@dataclass(frozen=True)
class HierarchicalConfig:
    """Which rows go to which stage."""

    column: str = "pism_label"  # the stratum column: pism_label, cmab_label, or stage
    sft_values: tuple[str, ...] = ("easy", "medium")
    grpo_values: tuple[str, ...] = ("medium", "hard")


def _keep(table: pa.Table, column: str, values: tuple[str, ...]) -> pa.Table:
    mask = pc.fill_null(pc.is_in(table.column(column), pa.array(list(values))), False)
    kept = table.filter(mask)
    positions = pa.array(range(kept.num_rows), type=pa.int64())
    return kept.set_column(kept.column_names.index("position"), "position", positions)


def split_stages(table: pa.Table, config: HierarchicalConfig) -> tuple[pa.Table, pa.Table]:
    """(SFT rows, GRPO rows), each in the table's order, positions renumbered.

    >>> t = pa.table({"id": list("abcd"), "position": [0, 1, 2, 3],
    ...               "pism_label": ["easy", "hard", "medium", "unsolved"]})
    >>> [s.column("id").to_pylist() for s in split_stages(t, HierarchicalConfig())]
    [['a', 'c'], ['b', 'c']]
    """
    if config.column not in table.column_names:
        raise ValueError(
            f"the hierarchical plan splits on column {config.column!r}, which the subset rows "
            f"lack (columns: {', '.join(table.column_names)}); score PISM / CMAB first or "
            "set hierarchical.column"
        )
    return _keep(table, config.column, config.sft_values), _keep(
        table, config.column, config.grpo_values
    )


def merge_metrics(out: str) -> int:
    """Write OUT/metrics.jsonl from OUT/sft and OUT/grpo logs; returns the record count."""
    merged, offset = [], 0
    for stage in ("sft", "grpo"):
        records = read_metrics(storage.join(out, stage, "metrics.jsonl"))
        for record in records:
            record = {**record, "stage": stage}
            record["samples_seen"] = record.get("samples_seen", 0) + offset
            merged.append(record)
        if records:
            offset = max(r.get("samples_seen", 0) for r in records) + offset
    path = storage.join(out, "metrics.jsonl")
    storage.remove(path)
    if merged:
        write_metrics(path, merged)
    return len(merged)

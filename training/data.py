"""A subset manifest -> the training rows in the order the optimizer must see them.

A subset lives in `RUN/subsets/NAME/`: Parquet with (id, position, stage) plus
`manifest.json`. Its rows come from `RUN/scored/` (pool rows + descriptors) when present,
else `RUN/pool/`. `ordered_rows` joins the two and sorts by position; training then walks the
table front to back, a global batch at a time.

How order survives several workers: global batch g holds positions [g*B, (g+1)*B) and worker
r of W takes the rank-strided slice g*B + r, g*B + r + W, ... of it (`step_rows`). The union
over workers at each optimizer step is exactly batch g, and DDP averages the gradients
before the step, so the optimizer sees the manifest order whatever W is.

Held-out rows for evaluation: either a separate clean pool (`heldout_rows` reads a synthetic
pool directory and keeps ground-truth defect "none", categories from the ground truth), or,
without one, a hash split of the run's rows (`is_heldout`): an id whose CRC32 falls in the
held-out bucket is evaluated on and never trained on.

Every read goes through operators/storage.py, so RUN may be an object-store URI.
"""

from __future__ import annotations

import json
import zlib

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from operators import storage
from operators.schema import ROW_SCHEMA

__all__ = [
    "heldout_rows",
    "is_heldout",
    "ordered_rows",
    "parquet_dataset",
    "read_subset",
    "rows_dir",
    "step_rows",
]

HASH_BUCKETS = 10_000
# Descriptor columns carried along when present (the hierarchical plan splits on them).
CARRIED = ("pism_label", "cmab_label", "pism_lambda", "cmab_ratio")


def read_subset(run: str, name: str) -> tuple[pa.Table, dict]:
    """(id, position, stage) sorted by position, and the manifest (empty if absent)."""
    folder = storage.join(run, "subsets", name)
    if not storage.isdir(folder):
        raise FileNotFoundError(f"no subset folder {folder}")
    files = [storage.join(folder, f) for f in storage.listdir(folder) if f.endswith(".parquet")]
    if not files:
        raise FileNotFoundError(f"no subset Parquet in {folder}")
    tables = [storage.read_parquet(f) for f in files]
    table = pa.concat_tables(tables, promote_options="default")
    missing = {"id", "position"} - set(table.column_names)
    if missing:
        raise ValueError(f"{folder}: subset lacks column(s) {sorted(missing)}")
    if "stage" not in table.column_names:
        table = table.append_column("stage", pa.array(["all"] * table.num_rows))
    table = table.select(["id", "position", "stage"]).sort_by("position")
    manifest_path = storage.join(folder, "manifest.json")
    manifest = {}
    if storage.exists(manifest_path):
        manifest = json.loads(storage.read_text(manifest_path))
    return table, manifest


def rows_dir(run: str) -> str:
    """Where a run's rows are: scored/ if it has Parquet, else pool/."""
    for name in ("scored", "pool"):
        folder = storage.join(run, name)
        if any(f.endswith(".parquet") for f in storage.listdir(folder)):
            return folder
    raise FileNotFoundError(f"{run} has neither scored/ nor pool/ Parquet")


def parquet_dataset(path: str) -> ds.Dataset:
    """A Parquet file or folder (local or URI) as a pyarrow dataset."""
    if not storage.is_remote(path):
        return ds.dataset(path, format="parquet")
    filesystem, inner = storage.filesystem(path)
    return ds.dataset(inner, format="parquet", filesystem=filesystem)


def _read_rows(folder: str, ids: pa.Array) -> pa.Table:
    dataset = parquet_dataset(folder)
    names = set(dataset.schema.names)
    columns = [n for n in ROW_SCHEMA.names if n in names] + [c for c in CARRIED if c in names]
    if isinstance(ids, pa.ChunkedArray):  # no chunks (an empty subset) would bind as null
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.string())
    return dataset.to_table(columns=columns, filter=pc.field("id").isin(ids))


def ordered_rows(run: str, name: str, heldout_fraction: float = 0.0) -> tuple[pa.Table, dict]:
    """The subset's rows (row columns + position, stage) in position order, and counts.

    Ids missing from the rows and ids in the held-out bucket are dropped (and counted); the
    rest keep their relative order, renumbered 0.. in `position`.
    """
    subset, manifest = read_subset(run, name)
    rows = _read_rows(rows_dir(run), subset.column("id"))
    index = {v: k for k, v in enumerate(rows.column("id").to_pylist())}
    take, stages, dropped_missing, dropped_heldout = [], [], 0, 0
    for row_id, stage in zip(
        subset.column("id").to_pylist(), subset.column("stage").to_pylist(), strict=True
    ):
        if row_id not in index:
            dropped_missing += 1
        elif is_heldout(row_id, heldout_fraction):
            dropped_heldout += 1
        else:
            take.append(index[row_id])
            stages.append(stage)
    table = rows.take(pa.array(take, type=pa.int64()))
    table = table.append_column("position", pa.array(range(len(take)), type=pa.int64()))
    table = table.append_column("stage", pa.array(stages, type=pa.string()))
    counts = {
        "subset": subset.num_rows,
        "train": len(take),
        "missing": dropped_missing,
        "heldout": dropped_heldout,
        "manifest": manifest,
    }
    return table, counts


def is_heldout(row_id: str, fraction: float) -> bool:
    """Whether an id falls in the held-out bucket (CRC32 of the id, `fraction` of them).

    >>> is_heldout("syn-0000001", 0.0), is_heldout("syn-0000001", 1.0)
    (False, True)
    """
    if fraction <= 0:
        return False
    return zlib.crc32(row_id.encode()) % HASH_BUCKETS < fraction * HASH_BUCKETS


def step_rows(num_rows: int, step: int, batch_per_worker: int, rank: int, world: int):
    """Row indices worker `rank` trains on at optimizer step `step` (0-based).

    The global batch is [step*B, step*B + B) with B = batch_per_worker * world, cut at
    num_rows; worker r takes every world-th index from offset r.

    >>> [step_rows(10, 1, 2, r, 2) for r in range(2)]
    [[4, 6], [5, 7]]
    >>> [step_rows(10, 2, 2, r, 2) for r in range(2)]
    [[8], [9]]
    """
    size = batch_per_worker * world
    start = step * size
    return list(range(start + rank, min(start + size, num_rows), world))


def heldout_rows(pool: str, per_category: int = 100, category_from_truth: bool = True):
    """Clean held-out rows from a synthetic pool directory (pool.jsonl + ground_truth.parquet).

    Keeps rows whose ground-truth defect is "none", at most `per_category` per category, in
    file order; the category column is replaced by the ground-truth category (which tells
    temporal from static video) when `category_from_truth`.
    """
    from operators.formats.readers import iter_chunk_tables
    from operators.formats.records import RecordOptions

    truth = storage.read_parquet(storage.join(pool, "ground_truth.parquet"))
    clean = {
        i: c
        for i, c, d in zip(
            truth.column("id").to_pylist(),
            truth.column("category").to_pylist(),
            truth.column("defect").to_pylist(),
            strict=True,
        )
        if d == "none"
    }
    options = RecordOptions(media_root=pool, source="heldout", check_media=True)
    kept, per = [], {}
    for rows, _ in iter_chunk_tables(storage.join(pool, "pool.jsonl"), options):
        for row in rows.to_pylist():
            category = clean.get(row["id"])
            if category is None or per.get(category, 0) >= per_category:
                continue
            per[category] = per.get(category, 0) + 1
            if category_from_truth:
                row["category"] = category
            kept.append(row)
    return pa.Table.from_pylist(kept, schema=ROW_SCHEMA)

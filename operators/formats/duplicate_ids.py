"""Unique ids after ingest: the global step over all ingest shards.

Chunks are parsed in parallel, so a repeated id can sit in two shards. After every shard is
written, one pass reads only the `id` column of all pool shards in shard order (the input's
order) and finds each id's first occurrence. Only the shards that hold a later occurrence are
rewritten:
- `on_duplicate_id: quarantine` (the default): the later rows go to that shard's quarantine
  with reason `duplicate_id` and the first occurrence's origin in the error; the first is kept.
- `on_duplicate_id: rename`: the n-th later occurrence of id X becomes `X#dup<n>` (n = 1, 2,
  ...; n grows past any id already taken), the given id kept in `extra._mmcurate.given_id`.
Crash-safe and idempotent: the quarantine shard is rewritten first (dropping any earlier
`duplicate_id` rows of the same origins), then the pool shard; a rerun finds no duplicate in
a shard already done and leaves it alone.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from operators import storage
from operators.formats.records import RESERVED, jsonable
from operators.formats.writers import write_parquet_atomic
from operators.row_errors import rows_read, with_rows_read
from operators.schema import quarantine_table

__all__ = ["POLICIES", "resolve_duplicate_ids"]

POLICIES = ("quarantine", "rename")


def _later_occurrences(ids_by_shard: list[list[str]]) -> dict[int, dict[int, int]]:
    """{shard: {row: n}} for every occurrence after the first of its id (n = 1, 2, ...)."""
    seen: dict[str, int] = {}
    later: dict[int, dict[int, int]] = {}
    for shard, ids in enumerate(ids_by_shard):
        for row, row_id in enumerate(ids):
            count = seen.get(row_id, 0)
            if count:
                later.setdefault(shard, {})[row] = count
            seen[row_id] = count + 1
    return later


def _renamed(row: dict, n: int, taken: set[str]) -> dict:
    while f"{row['id']}#dup{n}" in taken:
        n += 1
    new_id = f"{row['id']}#dup{n}"
    taken.add(new_id)
    extra = json.loads(row["extra"])
    extra.setdefault(RESERVED, {})["given_id"] = row["id"]
    return {**row, "id": new_id, "extra": json.dumps(extra, ensure_ascii=False)}


def _quarantine_rows(pool: pa.Table, rows: dict[int, int], first_origin: dict) -> list[dict]:
    out = []
    for k in rows:
        row = pool.slice(k, 1).to_pylist()[0]
        out.append(
            {
                "id": row["id"],
                "origin": row["origin"],
                "error_stage": "ingest",
                "reason": "duplicate_id",
                "error": f"id {row['id']!r} first seen at {first_origin[row['id']]}",
                "raw": json.dumps(row, ensure_ascii=False, default=jsonable),
            }
        )
    return out


def resolve_duplicate_ids(pool_dir: str, quarantine_dir: str, names: list[str], policy: str):
    """Make the ids of the ingest shards `names` unique; returns the rows moved or renamed."""
    if policy not in POLICIES:
        raise ValueError(f"on_duplicate_id {policy!r} is not one of {POLICIES}")
    paths = [storage.join(pool_dir, n) for n in names]
    id_tables = [storage.read_parquet(p, columns=["id", "origin"]) for p in paths]
    ids = [t.column("id").to_pylist() for t in id_tables]
    later = _later_occurrences(ids)
    if not later:
        return 0
    taken = {i for shard in ids for i in shard}
    first_origin: dict[str, str] = {}
    for table in id_tables:
        for row_id, origin in zip(
            table.column("id").to_pylist(), table.column("origin").to_pylist(), strict=True
        ):
            first_origin.setdefault(row_id, origin)
    for shard, rows in sorted(later.items()):
        pool = storage.read_parquet(paths[shard])
        if policy == "rename":
            records = pool.to_pylist()
            for k, n in rows.items():
                records[k] = _renamed(records[k], n, taken)
            write_parquet_atomic(pa.Table.from_pylist(records, schema=pool.schema), paths[shard])
            continue
        moved = _quarantine_rows(pool, rows, first_origin)
        q_path = storage.join(quarantine_dir, names[shard])
        old = storage.read_parquet(q_path)
        origins = pa.array([m["origin"] for m in moved])
        stale = pc.and_(pc.equal(old["reason"], "duplicate_id"), pc.is_in(old["origin"], origins))
        kept_old = old.filter(pc.invert(stale)).to_pylist()
        read = rows_read(old.schema)  # the shard's source count survives the rewrite
        write_parquet_atomic(with_rows_read(quarantine_table(kept_old + moved), read), q_path)
        keep = pa.array([k not in rows for k in range(pool.num_rows)])
        write_parquet_atomic(pool.filter(keep), paths[shard])
    return sum(len(rows) for rows in later.values())

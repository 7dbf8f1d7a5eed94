"""Fixtures of the training tests: a micro Qwen2-VL saved to disk, a run directory holding
the 400-line synthetic pool as Parquet rows, and helpers to write subsets and ordered rows."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory):
    """A ~0.2M-parameter Qwen2-VL (real architecture, random weights) on disk."""
    from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("micro")), TinyConfig.micro())


@pytest.fixture(scope="session")
def pool_rows(small_pool) -> pa.Table:
    """The small pool's readable rows (ROW_SCHEMA), read in-process without Ray."""
    from operators.formats.readers import iter_chunk_tables
    from operators.formats.records import RecordOptions

    options = RecordOptions(media_root=str(small_pool))
    tables = [rows for rows, _ in iter_chunk_tables(str(small_pool / "pool.jsonl"), options)]
    return pa.concat_tables(tables)


@pytest.fixture(scope="session")
def train_run(tmp_path_factory, pool_rows) -> str:
    """A run directory with pool/part-00000.parquet."""
    run = tmp_path_factory.mktemp("run")
    os.makedirs(run / "pool")
    pq.write_table(pool_rows, run / "pool" / "part-00000.parquet")
    return str(run)


def write_subset(run: str, name: str, ids: list[str], stages: list[str] | None = None) -> None:
    """A subset in the layout `mmcurate select` writes: ids in order, positions, stages.
    The Parquet rows are stored shuffled, so only `position` carries the order."""
    import json

    import numpy as np

    folder = os.path.join(run, "subsets", name)
    os.makedirs(folder, exist_ok=True)
    table = pa.table(
        {
            "id": ids,
            "position": list(range(len(ids))),
            "stage": stages or ["all"] * len(ids),
        }
    )
    perm = np.random.default_rng(0).permutation(len(ids))
    pq.write_table(table.take(perm), os.path.join(folder, "part-00000.parquet"))
    with open(os.path.join(folder, "manifest.json"), "w") as handle:
        json.dump({"name": name, "count": len(ids)}, handle)


@pytest.fixture
def subset_writer():
    return write_subset


@pytest.fixture(scope="session")
def warm_model(micro_model, train_run, pool_rows, tmp_path_factory):
    """(model dir, rows Parquet): the micro model after 40 SFT epochs on 8 image rows, so it
    answers some of them (GRPO's groups then disagree)."""
    import dataclasses

    from training.data import ordered_rows
    from training.sft import SftConfig, train_loop_per_worker

    rows = [r for r in pool_rows.to_pylist() if r["media_type"] == "image"][:8]
    write_subset(train_run, "warm8", [r["id"] for r in rows])
    table, _ = ordered_rows(train_run, "warm8")
    folder = tmp_path_factory.mktemp("warm")
    pq.write_table(table, folder / "rows.parquet")
    sft = SftConfig(
        model=micro_model,
        rows=str(folder / "rows.parquet"),
        out=str(folder / "sft"),
        batch_size=8,
        learning_rate=1e-2,
        epochs=40,
        eval_every=10**6,
        video_as_frames=True,
        cache_encodings=True,
    )
    train_loop_per_worker(dataclasses.asdict(sft))
    return str(folder / "sft" / "model"), str(folder / "rows.parquet")

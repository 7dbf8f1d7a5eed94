"""Stability samples are seeded per row (seed, row id, sample index): the same row gets the same
value whatever batch it comes in, in whichever order, on a fresh actor; another seed differs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from operators.model_descriptors import DescriptorConfig, ModelDescriptors
from operators.readers import iter_chunk_tables
from operators.records import RecordOptions
from operators.schema import ROW_SCHEMA
from operators.vlm_runtime import RuntimeConfig
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("qwen")), TinyConfig.micro())


@pytest.fixture(scope="module")
def rows(small_pool):
    options = RecordOptions(media_root=str(small_pool))
    tables = [t for t, _ in iter_chunk_tables(str(small_pool / "pool.jsonl"), options)]
    good = [r for t in tables for r in t.to_pylist()]
    images = [r for r in good if r["media_type"] == "image"][:4]
    return images + [r for r in good if r["media_type"] == "video"][:2]


def _stability(model_path, rows, seed=0) -> dict:
    config = DescriptorConfig(
        RuntimeConfig(model_path),
        descriptors=("stability",),
        stability_samples=4,
        stability_tokens=12,
        stability_temperature=0.1,
        stability_top_p=1.0,
        seed=seed,
    )
    out = ModelDescriptors(config)(pa.Table.from_pylist(rows, schema=ROW_SCHEMA))
    return dict(zip(out.column("id").to_pylist(), out.column("stability").to_pylist(), strict=True))


def test_stability_is_the_same_in_any_batch_order_and_actor(model_path, rows):
    whole = _stability(model_path, rows)
    assert len(set(whole.values())) > 1  # the samples are random enough to tell rows apart
    reversed_order = _stability(model_path, rows[::-1])
    halves = {**_stability(model_path, rows[3:]), **_stability(model_path, rows[:3])}
    alone = _stability(model_path, rows[2:3])
    assert reversed_order == whole and halves == whole
    assert alone == {rows[2]["id"]: whole[rows[2]["id"]]}
    other_seed = _stability(model_path, rows, seed=7)
    assert not np.allclose(list(other_seed.values()), list(whole.values()))

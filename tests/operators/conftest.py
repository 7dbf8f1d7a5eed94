"""Fixtures of the operator tests: the micro tiny Qwen2-VL and the small pool's rows."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def micro_qwen(tmp_path_factory):
    """A micro Qwen2-VL built offline (training/tiny_models.py), its directory."""
    from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("micro-qwen")), TinyConfig.micro())


@pytest.fixture(scope="session")
def small_pool_rows(small_pool):
    """Every row of the 400-line synthetic pool as the reader gives it (media paths resolved)."""
    from operators.formats.readers import iter_chunk_tables
    from operators.formats.records import RecordOptions

    options = RecordOptions(media_root=str(small_pool))
    tables = [t for t, _ in iter_chunk_tables(str(small_pool / "pool.jsonl"), options)]
    return [r for t in tables for r in t.to_pylist()]

"""Proxy warm-up: the loop trains (loss falls, weights change) and the model reloads; the
`mmcurate proxy warmup` job runs it under Ray Train and leaves RUN/proxy/ complete."""

from __future__ import annotations

import os

import pytest
import torch

from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl
from training.warmup import WarmupConfig, train_proxy

torch.set_num_threads(1)


def _rows(pool, count):
    options = RecordOptions(media_root=str(pool))
    tables = [t for t, _ in iter_chunk_tables(str(pool / "pool.jsonl"), options)]
    return [r for t in tables for r in t.to_pylist()][:count]


def test_train_proxy_learns_and_saves(tmp_path, small_pool):
    from transformers import AutoModelForImageTextToText

    base = build_tiny_qwen2_vl(str(tmp_path / "base"), TinyConfig.micro())
    rows = _rows(small_pool, 24)
    rows.append({**rows[0], "id": "bad", "media": ["/nonexistent.png"]})
    config = WarmupConfig(base=base, epochs=6, batch_size=8, lr=3e-3)
    metrics = train_proxy(rows, config, str(tmp_path / "out"))
    assert metrics["rows"] == 24 and metrics["skipped"] == {"media": 1}
    assert metrics["samples_seen"] == 6 * 24 and metrics["steps"] == 6 * 3
    assert metrics["loss_last"] < metrics["loss_first"] - 0.5
    before = AutoModelForImageTextToText.from_pretrained(base)
    after = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "out"))
    changed = [
        not torch.equal(p, q) for p, q in zip(before.parameters(), after.parameters(), strict=True)
    ]
    assert all(changed[:3]) and sum(changed) > 0.9 * len(changed)


@pytest.mark.slow
def test_proxy_warmup_job_under_ray_train(ray_session, small_pool, tmp_path):
    from ray_jobs.ingest import IngestConfig, ingest
    from ray_jobs.proxy import main

    run = tmp_path / "run"
    counts = ingest(IngestConfig(str(small_pool / "pool.jsonl"), str(run)))
    args = ["warmup", "--run", str(run), "--fraction", "0.2", "--epochs", "1"]
    assert main(args) == 0
    proxy = run / "proxy"
    assert (proxy / "_SUCCESS").exists() and (proxy / "model.safetensors").exists()
    trained = (proxy / "train_ids.txt").read_text().split()
    assert 0.1 * counts["kept"] < len(trained) < 0.3 * counts["kept"]
    mtime = os.path.getmtime(proxy / "_SUCCESS")
    assert main(args) == 0  # complete: nothing is redone
    assert os.path.getmtime(proxy / "_SUCCESS") == mtime

"""Proxy warm-up: the SFT loop on the slice trains (held-in NLL falls, weights change) and the
model reloads; the recipe's worker, GPU and resource settings reach Ray Train's ScalingConfig,
and a 2-worker CPU run splits every step's rows over the workers; the `mmcurate proxy warmup`
job leaves RUN/proxy/ complete."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions
from operators.vlm_inputs import decode_media, encode_rows
from operators.vlm_runtime import RuntimeConfig, VLMRuntime
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl
from training.warmup import WarmupConfig, default_lr, scaling_config, train_proxy, warm_up

torch.set_num_threads(1)


def _rows(pool, count):
    options = RecordOptions(media_root=str(pool))
    tables = [t for t, _ in iter_chunk_tables(str(pool / "pool.jsonl"), options)]
    return [r for t in tables for r in t.to_pylist()][:count]


def _mean_nll(model: str, rows: list[dict]) -> float:
    runtime = VLMRuntime(RuntimeConfig(model))
    media = [decode_media(r, 8) for r in rows]
    return float(np.mean(runtime.nll(encode_rows(runtime.processor, rows, media))[0]))


def test_train_proxy_learns_and_saves(tmp_path, small_pool):
    from transformers import AutoModelForImageTextToText

    base = build_tiny_qwen2_vl(str(tmp_path / "base"), TinyConfig.micro())
    rows = _rows(small_pool, 24)
    bad = {**rows[0], "id": "bad", "media": ["/nonexistent.png"]}
    config = WarmupConfig(base=base, epochs=6, batch_size=8, lr=3e-3)
    metrics = train_proxy([*rows, bad], config, str(tmp_path / "out"))
    assert metrics["rows"] == 25 and metrics["skipped_visits"] == 6  # the bad row, each epoch
    assert metrics["samples_seen"] == 6 * 25 and metrics["steps"] == 6 * 4
    assert _mean_nll(str(tmp_path / "out"), rows) < _mean_nll(base, rows) - 0.5
    before = AutoModelForImageTextToText.from_pretrained(base)
    after = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "out"))
    changed = [
        not torch.equal(p, q) for p, q in zip(before.parameters(), after.parameters(), strict=True)
    ]
    assert all(changed[:3]) and sum(changed) > 0.9 * len(changed)


def test_default_learning_rate_follows_the_base(tmp_path):
    base = build_tiny_qwen2_vl(str(tmp_path / "base"), TinyConfig.micro())
    from transformers import AutoModelForImageTextToText

    from training.warmup import _num_params, _sft_config

    assert default_lr(200_000, 0) == 1e-3 and default_lr(7_000_000_000, 0) == 2e-5
    assert default_lr(7_000_000_000, 16) == 2e-4
    model = AutoModelForImageTextToText.from_pretrained(base)
    assert _num_params(base) == sum(p.numel() for p in model.parameters())  # tied: once
    assert _sft_config(WarmupConfig(base=base), "r", "o").learning_rate == 1e-3
    assert _sft_config(WarmupConfig(base=base, lr=5e-4), "r", "o").learning_rate == 5e-4


def test_scaling_config_takes_the_recipe_settings():
    gpu = WarmupConfig(
        base="", num_workers=4, use_gpu=True, resources_per_worker={"CPU": 8, "GPU": 1}
    )
    scaling = scaling_config(gpu)
    assert (scaling.num_workers, scaling.use_gpu) == (4, True)
    assert scaling.resources_per_worker == {"CPU": 8, "GPU": 1}
    assert scaling._resources_per_worker_not_none == {"CPU": 8, "GPU": 1}
    cpu = scaling_config(WarmupConfig(base=""))
    assert (cpu.num_workers, cpu.use_gpu, cpu.resources_per_worker) == (1, False, None)
    with pytest.raises(ValueError, match="multiple of num_workers"):
        warm_up(None, WarmupConfig(base="", batch_size=9, num_workers=2), "o", "s")


@pytest.mark.slow
def test_two_cpu_workers_split_each_step(ray_session, tmp_path, small_pool):
    import pyarrow as pa
    import ray

    base = build_tiny_qwen2_vl(str(tmp_path / "base"), TinyConfig.micro())
    rows = _rows(small_pool, 16)
    dataset = ray.data.from_arrow(pa.Table.from_pylist(rows))
    config = WarmupConfig(base=base, epochs=1, batch_size=8, num_workers=2, lr=3e-3)
    metrics = warm_up(dataset, config, str(tmp_path / "proxy"), str(tmp_path / "train"))
    assert metrics == {**metrics, "rows": 16, "steps": 2, "samples_seen": 16, "skipped_visits": 0}
    steps = tmp_path / "train" / "sft" / "steps"
    ranks = [[json.loads(x) for x in open(steps / f"rank-{r}.jsonl")] for r in (0, 1)]
    assert [len(s["ids"]) for r in ranks for s in r] == [4, 4, 4, 4]  # 8 per step, 4 each
    seen = [i for r in ranks for s in r for i in s["ids"]]
    assert sorted(seen) == sorted(r["id"] for r in rows)
    assert os.path.exists(tmp_path / "proxy" / "model.safetensors")


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

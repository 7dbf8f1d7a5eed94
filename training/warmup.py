"""Proxy warm-up: train the proxy VLM briefly on a small random slice of the pool.

Descriptors such as loss, vds and PISM are only informative when the proxy has seen the task:
GDO measures with a frozen proxy that already answers such questions, and OST warms its proxy
up on ~5% of the data first. `warm_up` runs `train_loop_per_worker` under Ray Train's
`TorchTrainer` (CPU workers here, GPU workers on a cluster); the same loop runs as a plain
function (`train_proxy`) in one process for tests. Training is answer-only SFT with the
runtime's collation (operators/vlm_inputs.py): the slice is decoded and encoded once, then
seen for a number of epochs in shuffled order. The warmed model and its processor are saved
with `save_pretrained`, so descriptors load it like any checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from operators import storage
from operators.media import MediaError
from operators.vlm_inputs import (
    InputsConfig,
    RowError,
    batch_rows,
    collate,
    decode_media,
    encode_rows,
)

__all__ = ["WarmupConfig", "encode_slice", "train_loop_per_worker", "train_proxy", "warm_up"]


@dataclass(frozen=True)
class WarmupConfig:
    """Brief answer-only SFT of the proxy on a random slice of the pool."""

    base: str  # model directory to start from
    fraction: float = 0.2  # share of the pool in the slice
    max_rows: int = 2000  # slice size cap
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    num_frames: int = 8
    time_budget_s: float = 0.0  # stop after this many seconds of training (0: no limit)
    num_threads: int = 1  # torch threads per worker
    log_every: int = 50  # print loss and throughput every this many steps
    seed: int = 0


def encode_slice(processor, rows: list[dict], inputs: InputsConfig, chunk: int = 64):
    """Encode rows with their media (one processor call per chunk); rows that fail are
    skipped and counted by reason."""
    encodings, skipped = [], {}
    for start in range(0, len(rows), chunk):
        part, media = [], []
        for row in rows[start : start + chunk]:
            try:
                media.append(decode_media(row, inputs.num_frames))
                part.append(row)
            except MediaError:
                skipped["media"] = skipped.get("media", 0) + 1
        for result in encode_rows(processor, part, media, inputs):
            if isinstance(result, RowError):
                skipped[result.reason] = skipped.get(result.reason, 0) + 1
            else:
                encodings.append(result)
    return encodings, skipped


def _step(model, optimizer, batch) -> float:
    out = model(**batch.inputs, labels=batch.labels)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    return float(out.loss.detach())


def train_proxy(rows: list[dict], config: WarmupConfig, out_dir: str) -> dict:
    """Train `config.base` on `rows` and save model + processor to `out_dir`; return metrics."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    base = storage.local_copy(config.base)  # a base under an object-store URI: copied once
    processor = AutoProcessor.from_pretrained(base, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(
        base, dtype=torch.float32, local_files_only=True
    )
    model.train()
    inputs = InputsConfig(num_frames=config.num_frames)
    encodings, skipped = encode_slice(processor, rows, inputs)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    rng = np.random.default_rng(config.seed)
    losses, seen, started = [], 0, time.time()
    for _ in range(config.epochs):
        order = rng.permutation(len(encodings))
        for start in range(0, len(order), config.batch_size):
            chunk = [encodings[i] for i in order[start : start + config.batch_size]]
            losses.append(_step(model, optimizer, collate(chunk, processor, "right")))
            seen += len(chunk)
            if len(losses) % config.log_every == 0:
                rate = seen / (time.time() - started)
                print(f"[warmup] step {len(losses)} loss {losses[-1]:.3f} ({rate:.0f} samples/s)")
            if config.time_budget_s and time.time() - started > config.time_budget_s:
                break
        else:
            continue
        break
    model.eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    head = float(np.mean(losses[:5])) if losses else float("nan")
    tail = float(np.mean(losses[-5:])) if losses else float("nan")
    return {
        "rows": len(encodings),
        "skipped": skipped,
        "samples_seen": seen,
        "steps": len(losses),
        "loss_first": head,
        "loss_last": tail,
        "train_s": round(time.time() - started, 1),
    }


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train worker: read the `train` shard, train, report the saved model as checkpoint."""
    import ray.train

    config = WarmupConfig(**loop_config)
    shard = ray.train.get_dataset_shard("train")
    rows = []
    for batch in shard.iter_batches(batch_size=256, batch_format="numpy"):
        rows.extend(batch_rows(batch))
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_proxy(rows, config, tmp)
        rank = ray.train.get_context().get_world_rank()
        checkpoint = ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None
        ray.train.report(
            {k: v for k, v in metrics.items() if k != "skipped"}, checkpoint=checkpoint
        )


def warm_up(dataset, config: WarmupConfig, out_dir: str, storage_path: str) -> dict:
    """Run the warm-up under Ray Train's TorchTrainer on one CPU worker (GPU on a cluster with
    `use_gpu`), and copy the reported model to `out_dir` atomically; return the metrics.

    `out_dir` and `storage_path` may be object-store URIs: Ray Train writes its checkpoints
    through the URI's pyarrow filesystem, and the model is uploaded to `out_dir`."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not storage.is_remote(storage_path):
        storage_path = os.path.abspath(storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=asdict(config),
        scaling_config=ScalingConfig(num_workers=1, use_gpu=False),
        run_config=RunConfig(name="proxy_warmup", storage_path=storage_path),
        datasets={"train": dataset},
    )
    result = trainer.fit()
    if storage.is_remote(out_dir):
        with tempfile.TemporaryDirectory() as tmp:
            result.checkpoint.to_directory(tmp)
            storage.remove(out_dir)
            storage.upload_dir(tmp, out_dir)
        return dict(result.metrics)
    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    result.checkpoint.to_directory(tmp)
    os.replace(tmp, out_dir)
    return dict(result.metrics)

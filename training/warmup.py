"""Proxy warm-up: train the proxy VLM briefly on a small random slice of the pool.

Descriptors such as loss, vds and PISM are only informative when the proxy has seen the task:
GDO measures with a frozen proxy that already answers such questions, and OST warms its proxy
up on ~5% of the data first. The warm-up is the SFT stage's loop (training/sft.py) on the
slice: answer-only loss, the warm-up + cosine schedule, gradient clipping, LoRA when
`lora_rank > 0`, bf16 on GPU, each row encoded once and kept for the later epochs. The slice
is written as ordered rows (a seeded shuffle; every epoch sees that order) and `warm_up` runs
the loop under Ray Train's `TorchTrainer` with `num_workers` workers (`use_gpu`,
`resources_per_worker` as the recipe says); `train_proxy` runs the same loop in this process.
The warmed model and its processor are saved with `save_pretrained`, so descriptors load it
like any checkpoint.

Learning rate: `lr = 0` picks one that fits the base: 1e-3 for a tiny model (< 10M
parameters, the synthetic proxies), 2e-5 for a full fine-tune of a real checkpoint and 2e-4
for LoRA on one (the LLaVA / Qwen-VL SFT recipes' rates).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from operators import storage

__all__ = ["WarmupConfig", "default_lr", "scaling_config", "train_proxy", "warm_up"]

TINY_PARAMS = 10_000_000


@dataclass(frozen=True)
class WarmupConfig:
    """Brief answer-only SFT of the proxy on a random slice of the pool."""

    base: str  # model directory to start from
    fraction: float = 0.2  # share of the pool in the slice
    max_rows: int = 2000  # slice size cap
    epochs: int = 8
    batch_size: int = 32  # global batch (a multiple of num_workers)
    lr: float = 0.0  # peak learning rate; 0: by the base's size and LoRA (see default_lr)
    lr_schedule: str = "cosine"  # as training/sft.py: cosine | linear | constant
    warmup_ratio: float = 0.03  # linear warm-up share of the steps
    max_grad_norm: float = 1.0  # clip the global gradient norm; 0 = no clipping
    weight_decay: float = 0.0
    lora_rank: int = 0  # > 0: LoRA adapters (large bases), merged into the saved model
    num_frames: int = 8
    dtype: str = "auto"  # float32 on CPU, bfloat16 on GPU
    num_workers: int = 1  # Ray Train workers (data parallel)
    use_gpu: bool = False  # one GPU per worker
    resources_per_worker: dict = field(default_factory=dict)  # e.g. {"CPU": 8, "GPU": 1}
    num_threads: int = 1  # torch threads per worker
    seed: int = 0


def default_lr(num_params: int, lora_rank: int) -> float:
    """The warm-up's learning rate when the recipe gives none.

    >>> default_lr(1_000_000, 0), default_lr(2_000_000_000, 0), default_lr(2_000_000_000, 8)
    (0.001, 2e-05, 0.0002)
    """
    if num_params < TINY_PARAMS:
        return 1e-3
    return 2e-4 if lora_rank else 2e-5


def _num_params(base: str) -> int:
    """Parameter count of a saved model, from its safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    folder = storage.local_copy(base)
    total = 0
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), framework="np") as handle:
                for key in handle.keys():
                    total += int(np.prod(handle.get_slice(key).get_shape()))
    return total


def scaling_config(config: WarmupConfig):
    """The Ray Train `ScalingConfig` of the warm-up job."""
    from ray.train import ScalingConfig

    return ScalingConfig(
        num_workers=config.num_workers,
        use_gpu=config.use_gpu,
        resources_per_worker=dict(config.resources_per_worker) or None,
    )


def _ordered_slice(rows: pa.Table, seed: int) -> pa.Table:
    """The slice in a seeded random order, with the `position` the SFT loop keys rows by."""
    order = np.random.default_rng(seed).permutation(rows.num_rows)
    table = rows.take(order)
    if "position" in table.column_names:
        table = table.drop_columns(["position"])
    return table.append_column("position", pa.array(np.arange(table.num_rows), pa.int64()))


def _sft_config(config: WarmupConfig, rows: str, out: str):
    from training.sft import SftConfig

    lr = config.lr or default_lr(_num_params(config.base), config.lora_rank)
    return SftConfig(
        model=config.base,
        rows=rows,
        out=out,
        batch_size=config.batch_size,
        learning_rate=lr,
        lr_schedule=config.lr_schedule,
        warmup_ratio=config.warmup_ratio,
        max_grad_norm=config.max_grad_norm,
        weight_decay=config.weight_decay,
        epochs=config.epochs,
        lora_rank=config.lora_rank,
        eval_every=0,
        cache_encodings=True,
        record_ids=True,  # OUT/steps/rank-R.jsonl: the ids each worker trained on, per step
        num_frames=config.num_frames,
        dtype=config.dtype,
        threads=config.num_threads,
        seed=config.seed,
    )


def _metrics(progress: dict, rows: int, lr: float) -> dict:
    return {
        "rows": rows,
        "steps": int(progress["step"]),
        "samples_seen": int(progress["samples_seen"]),
        "skipped_visits": int(progress.get("skipped", 0)),  # row x epoch visits not trained
        "loss_last": float(progress["loss"]),
        "lr": lr,
        "train_s": round(float(progress["train_s"]), 1),
    }


def _prepare(rows: pa.Table, config: WarmupConfig, work: str):
    """Write the ordered slice under `work`; the SFT config that trains on it."""
    table = _ordered_slice(rows, config.seed)
    path = storage.join(work, "rows.parquet")
    storage.write_parquet(table, path)
    return table, _sft_config(config, path, storage.join(work, "sft"))


def train_proxy(rows: list[dict], config: WarmupConfig, out_dir: str) -> dict:
    """Train `config.base` on `rows` in this process (the SFT loop, no Ray) and save model +
    processor to `out_dir`; return the metrics."""
    from training.sft import train_loop_per_worker

    with tempfile.TemporaryDirectory() as work:
        table, sft = _prepare(pa.Table.from_pylist(rows), config, work)
        progress = train_loop_per_worker(dataclasses.asdict(sft))
        storage.copy_dir(storage.join(sft.out, "model"), out_dir)
    return _metrics(progress, table.num_rows, sft.learning_rate)


def warm_up(dataset, config: WarmupConfig, out_dir: str, storage_path: str) -> dict:
    """Run the warm-up under Ray Train's TorchTrainer (`num_workers` workers, GPUs with
    `use_gpu`) and copy the trained model to `out_dir`; return the metrics.

    `out_dir` and `storage_path` may be object-store URIs: the rows, Ray Train's checkpoints
    and the model go through the URI's filesystem (operators/storage.py)."""
    from ray.train import CheckpointConfig, RunConfig
    from ray.train.torch import TorchTrainer

    from training.sft import train_loop_per_worker

    if config.batch_size % config.num_workers:
        raise ValueError(f"batch_size {config.batch_size} is not a multiple of num_workers")
    if not storage.is_remote(storage_path):
        storage_path = os.path.abspath(storage_path)
    table, sft = _prepare(_to_arrow(dataset), config, storage_path)
    storage.remove(sft.out)  # a fresh run: the slice may have changed
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=dataclasses.asdict(sft),
        scaling_config=scaling_config(config),
        run_config=RunConfig(
            name="proxy_warmup",
            storage_path=storage.join(storage_path, "ray"),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    result = trainer.fit()
    storage.copy_dir(storage.join(sft.out, "model"), out_dir)
    print(f"[mmcurate] proxy warm-up: {json.dumps(result.metrics, default=str)}", flush=True)
    return _metrics(result.metrics, table.num_rows, sft.learning_rate)


def _to_arrow(dataset) -> pa.Table:
    import ray

    return pa.concat_tables(ray.get(dataset.to_arrow_refs()))

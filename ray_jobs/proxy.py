"""`mmcurate proxy warmup --run DIR`: warm the proxy VLM up on a random slice of `DIR/pool/`.

Without `--base`, a tiny Qwen2-VL is built offline first (its BPE tokenizer trained on the
slice's text) in `DIR/proxy_base/`. The warmed model goes to `DIR/proxy/` with the ids it
trained on (`train_ids.txt`, so evaluations can hold them out) and a `_SUCCESS` marker
holding the training metrics; a rerun with the marker present does nothing. The
`score` stage uses `DIR/proxy/` unless given another proxy. Under a remote run (`s3://...`)
the tiny base is built in a local folder and uploaded to `DIR/proxy_base/`, the Ray Train
worker copies the base it starts from to a local cache, checkpoints go to `DIR/proxy_train/`
through Ray Train's storage, and the warmed model is uploaded to `DIR/proxy/`.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from dataclasses import asdict, replace

import pyarrow as pa

from operators import storage
from ray_jobs.rundir import ensure_ray, is_complete, mark_complete, read_counts
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl
from training.warmup import WarmupConfig, warm_up

__all__ = ["main", "proxy_warmup", "slice_pool"]


def _slice_key(batch: pa.Table, seed: int) -> pa.Table:
    """A uniform key in [0, 1) per row from SHA1(seed:id): the same rows on every run."""
    keys = [
        int(hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()[:12], 16) / 16**12
        for i in batch.column("id").to_pylist()
    ]
    return batch.append_column("_slice_key", pa.array(keys, pa.float64()))


def slice_pool(run: str, config: WarmupConfig, seed: int):
    """A random slice of the pool: `fraction` of the rows, at most `max_rows` (Ray Dataset).

    Rows are chosen by a hash of (seed, id), not by Ray's block-dependent sampling, so the
    same pool and seed give the same slice (and the same held-out `train_ids.txt`)."""
    import ray

    ds = ray.data.read_parquet(storage.join(run, "pool"), file_extensions=["parquet"])
    ds = ds.map_batches(_slice_key, fn_kwargs={"seed": seed}, batch_format="pyarrow")
    ds = ds.filter(expr=f"_slice_key < {float(config.fraction)!r}")
    ds = ds.sort("_slice_key").limit(config.max_rows)
    return ds.drop_columns(["_slice_key"]).materialize()


def proxy_warmup(run: str, config: WarmupConfig | None = None) -> dict:
    """Warm the proxy up for `run`; returns the metrics (read back if already complete)."""
    out = storage.join(run, "proxy")
    if is_complete(out):
        return read_counts(out)
    ensure_ray()
    config = config or WarmupConfig(base="")
    dataset = slice_pool(run, config, config.seed)
    if not config.base:
        base = storage.join(run, "proxy_base")
        if not storage.exists(storage.join(base, "config.json")):
            texts = [m["content"] for r in dataset.take_all() for m in r["messages"]]
            _build_base(base, TinyConfig(seed=config.seed), texts)
        config = replace(config, base=base)
    metrics = warm_up(dataset, config, out, storage.join(run, "proxy_train"))
    ids = sorted(str(i) for i in dataset.to_pandas()["id"])
    storage.write_text(storage.join(out, "train_ids.txt"), "\n".join(ids) + "\n")
    metrics = {**metrics, "base": config.base, "config": asdict(config)}
    mark_complete(out, metrics)
    return metrics


def _build_base(base: str, tiny: TinyConfig, texts: list[str]) -> None:
    """Build the tiny base model in `base` (built locally and uploaded for a remote run)."""
    if not storage.is_remote(base):
        build_tiny_qwen2_vl(base, tiny, texts=texts)
        return
    with tempfile.TemporaryDirectory() as local:
        model = storage.join(local, "model")
        build_tiny_qwen2_vl(model, tiny, texts=texts)
        config = storage.read_bytes(storage.join(model, "config.json"))
        storage.remove(storage.join(model, "config.json"))
        storage.upload_dir(model, base)
        storage.write_bytes(storage.join(base, "config.json"), config)  # last: marks it whole


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate proxy", description=__doc__)
    parser.add_argument("action", choices=["warmup"])
    parser.add_argument("--run", required=True, help="run directory with pool/")
    parser.add_argument("--base", default="", help="model directory; default: build a tiny one")
    defaults = WarmupConfig(base="")
    parser.add_argument("--fraction", type=float, default=defaults.fraction)
    parser.add_argument("--max-rows", type=int, default=defaults.max_rows)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--lora-rank", type=int, default=defaults.lora_rank)
    parser.add_argument("--num-workers", type=int, default=defaults.num_workers)
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per Ray Train worker")
    parser.add_argument("--threads", type=int, default=defaults.num_threads)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    config = WarmupConfig(
        base=args.base,
        fraction=args.fraction,
        max_rows=args.max_rows,
        epochs=args.epochs,
        lr=args.lr,
        lora_rank=args.lora_rank,
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        num_threads=args.threads,
        seed=args.seed,
    )
    print(f"[mmcurate] proxy warmup config: {asdict(config)}")
    started = time.time()
    metrics = proxy_warmup(args.run, config)
    print(f"[mmcurate] proxy warmup: {metrics} ({time.time() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

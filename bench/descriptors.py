"""Benchmark: rows/s of the model-descriptor operator vs the raw model forwards it runs.

The operator (operators/model_descriptors.py, the work one Ray Data actor does per batch)
decodes media, builds inputs for each variant (with media, blind, frames shuffled), runs the
forwards and derives the columns. The reference is the same forwards on the same, already
encoded batches: `ratio = stage rows/s / forward rows/s` is the share of the actor's time
spent in the model (1.0 = no pipeline overhead). Other descriptor groups (stability, PISM,
CMAB) are timed alone beside it for scale.

    python bench/descriptors.py                      # tiny ~1M Qwen2-VL, 256 synthetic rows
    python bench/descriptors.py --model DIR --run RUN --rows 512
    python bench/descriptors.py --size 3b            # GPU: Qwen2.5-VL-3B dimensions, random
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pyarrow as pa

from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions
from operators.model_descriptors import DescriptorConfig, ModelDescriptors
from operators.pism import PismConfig
from operators.schema import ROW_SCHEMA
from operators.vlm_inputs import batch_rows, decode_media, encode_row, frame_order
from operators.vlm_runtime import RuntimeConfig
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl


def _rows(run: str | None, tmp: str, count: int) -> pa.Table:
    if run:
        import pyarrow.dataset as pds

        return pds.dataset(os.path.join(run, "pool"), format="parquet").head(count)
    from ray_jobs.synth import synthesize

    synthesize(count + count // 4, os.path.join(tmp, "pool"), seed=3)
    options = RecordOptions(media_root=os.path.join(tmp, "pool"))
    path = os.path.join(tmp, "pool", "pool.jsonl")
    tables = [t for t, _ in iter_chunk_tables(path, options)]
    return pa.concat_tables(tables).slice(0, count).cast(ROW_SCHEMA)


def _batches(table: pa.Table, size: int) -> list[dict]:
    out = []
    for start in range(0, table.num_rows, size):
        part = table.slice(start, size)
        out.append({c: part.column(c).to_numpy(zero_copy_only=False) for c in part.column_names})
    return out


def _loss_encodings(op: ModelDescriptors, batch: dict) -> list:
    """The encodings the `loss` + `temporal` groups run forwards on, built ahead of time."""
    runtime, inputs = op.runtime, op.runtime.config.inputs
    out = []
    for row in batch_rows(batch):
        media = decode_media(row, inputs.num_frames)
        out.append(encode_row(runtime.processor, row, media, inputs))
        if media:
            out.append(encode_row(runtime.processor, row, None, inputs))
        if any(m.ndim == 4 for m in media):
            order = [m[frame_order(len(m), str(row["id"]), "shuffled")] for m in media]
            out.append(encode_row(runtime.processor, row, order, inputs))
    return out


def _timed(fn, batches: list) -> float:
    fn(batches[0])  # warm-up (allocations, first-call caches)
    started = time.perf_counter()
    for batch in batches:
        fn(batch)
    return time.perf_counter() - started


def bench(model: str, table: pa.Table, batch_size: int, device: str, groups: list[str]) -> None:
    runtime = RuntimeConfig(model, device=device)
    config = DescriptorConfig(
        runtime, descriptors=("loss", "temporal"), pism=PismConfig(masks_per_ratio=2)
    )
    op = ModelDescriptors(config)
    batches = _batches(table, batch_size)
    rows = table.num_rows
    encodings = [_loss_encodings(op, b) for b in batches]
    forward_s = _timed(lambda e: op.runtime.nll(e), encodings)
    stage_s = _timed(op, batches)
    forwards = sum(len(e) for e in encodings)
    print(f"device {op.runtime.device} dtype {op.runtime.dtype}; {rows} rows, batch {batch_size}")
    print(
        f"  params {sum(p.numel() for p in op.runtime.model.parameters()) / 1e6:.2f}M; "
        f"{forwards} sequences ({forwards / rows:.2f} per row: media, blind, shuffled)"
    )
    print(f"  raw forward      {rows / forward_s:9.1f} rows/s")
    print(
        f"  descriptor stage {rows / stage_s:9.1f} rows/s   (loss, loss_blind, vds, ppl, temporal)"
    )
    print(f"  ratio stage / forward = {forward_s / stage_s:.2f}")
    for group in groups:
        single = ModelDescriptors(
            DescriptorConfig(runtime, descriptors=(group,), pism=PismConfig(masks_per_ratio=2))
        )
        seconds = _timed(single, batches[:2])
        print(f"  group {group:10s} alone {2 * batch_size / seconds:9.1f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model dir; default: build a tiny one")
    parser.add_argument("--run", default=None, help="run dir whose pool/ to read")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", choices=["tiny", "3b"], default="tiny")
    parser.add_argument("--groups", default="stability,pism,cmab", help="also time these alone")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            size = TinyConfig() if args.size == "tiny" else TinyConfig.qwen25_vl_3b_dims()
            model = build_tiny_qwen2_vl(os.path.join(tmp, "model"), size)
        table = _rows(args.run, tmp, args.rows)
        groups = [g for g in args.groups.split(",") if g]
        bench(model, table, args.batch_size, args.device, groups)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

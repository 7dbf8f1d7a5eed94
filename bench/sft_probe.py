"""How fast does the tiny Qwen2-VL learn a set of rows? One SFT run as a plain process, then
held-out accuracy per (question type, answer style) of the final model.

The probes behind docs/quality.md's "What to expect from the tiny model": the product's SFT loop
(training.sft, outside Ray Train, one thread) from a freshly built tiny model whose size and
picture resolution are flags, on any training rows (ROW_SCHEMA Parquet, e.g. a quality arm's
`rows.parquet`, or an ingested pool's shards) against a held-out synthetic pool whose ground
truth gives each row's question type and style.

    python bench/sft_probe.py --rows ARM/rows.parquet --heldout QOUT/heldout.parquet \\
        --truth QOUT/heldout/ground_truth.parquet --out /tmp/probe --steps 600
    python bench/sft_probe.py ... --image-side 112          # 16 picture tokens instead of 4
    python bench/sft_probe.py ... --vision-embed 128 --vision-depth 4 --lr-schedule constant
    python bench/sft_probe.py ... --base "$(mmcurate base path)"   # from the pretrained base
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from operators import storage  # noqa: E402
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl  # noqa: E402


def training_rows(path: str, out: str) -> str:
    """A Parquet of the rows in a fixed shuffled order, with the `position` column SFT reads."""
    table = storage.read_parquet(path)  # a file, or every shard of a folder
    if "position" not in table.column_names:
        table = table.take(pa.array(np.random.default_rng(0).permutation(table.num_rows)))
        table = table.append_column("position", pa.array(range(table.num_rows), pa.int64()))
    rows = os.path.join(out, "rows.parquet")
    pq.write_table(table, rows)
    return rows


def upscale_pictures(model: str, side: int) -> None:
    """Set the processor's min_pixels = max_pixels = side^2, so small pictures are upscaled
    (the default keeps 64x64 pictures at 56x56: 4 tokens after the 2x2 merge)."""
    path = os.path.join(model, "processor_config.json")
    with open(path) as handle:
        config = json.load(handle)
    for key in ("image_processor", "video_processor"):
        config[key]["size"] = {"shortest_edge": side * side, "longest_edge": side * side}
    with open(path, "w") as handle:
        json.dump(config, handle, indent=1)


def accuracy_by_type(model: str, heldout: str, truth: str) -> dict:
    """{(question type, style): (rows, accuracy)} of teacher-forced exact answers."""
    from operators.vlm_runtime import RuntimeConfig, VLMRuntime
    from training.evaluate import encode_rows

    runtime = VLMRuntime(RuntimeConfig(model=model))
    data = encode_rows(runtime.processor, pq.read_table(heldout), runtime.config.inputs)
    _, correct = runtime.nll(data.encodings)
    kinds = {r["id"]: (r["qtype"], r["style"]) for r in pq.read_table(truth).to_pylist()}
    groups = defaultdict(list)
    for row_id, ok in zip(data.ids, correct, strict=True):
        groups[kinds[row_id]].append(bool(ok))
    return {k: (len(v), float(np.mean(v))) for k, v in sorted(groups.items())}


def initial_model(args: argparse.Namespace) -> str:
    """A freshly built tiny model (random weights) of the flags' size, in OUT/base."""
    model = os.path.join(args.out, "base")
    if args.micro:
        size = dataclasses.replace(TinyConfig.micro(), seed=args.seed)
    else:
        size = TinyConfig(
            vision_embed_dim=args.vision_embed, vision_depth=args.vision_depth, seed=args.seed
        )
    build_tiny_qwen2_vl(model, size)
    if args.image_side:
        upscale_pictures(model, args.image_side)
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", required=True, help="training rows: a Parquet file or a folder")
    p.add_argument("--heldout", required=True, help="held-out rows (ROW_SCHEMA Parquet)")
    p.add_argument("--truth", required=True, help="the held-out pool's ground_truth.parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--lr-schedule", default="cosine", choices=("cosine", "linear", "constant"))
    p.add_argument("--evaluations", type=int, default=6)
    p.add_argument("--image-side", type=int, default=0, help="upscale pictures to this side")
    p.add_argument("--vision-embed", type=int, default=TinyConfig.vision_embed_dim)
    p.add_argument("--vision-depth", type=int, default=TinyConfig.vision_depth)
    p.add_argument("--micro", action="store_true", help="the ~0.2M-parameter test model")
    p.add_argument("--base", default="", help="start from this model (e.g. `mmcurate base path`)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    from training.sft import train_loop_per_worker

    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    model = args.base or initial_model(args)
    started = time.time()
    train_loop_per_worker(
        {
            "model": model,
            "rows": training_rows(args.rows, args.out),
            "out": os.path.join(args.out, "run"),
            "heldout": args.heldout,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "lr_schedule": args.lr_schedule,
            "epochs": 10_000,  # cycle the rows; --steps is the budget
            "max_steps": args.steps,
            "eval_every": max(args.steps * args.batch_size // args.evaluations, 1),
            "cache_encodings": True,
            "seed": args.seed,
        }
    )
    print(f"trained {args.steps} steps in {time.time() - started:.0f} s")
    print("samples  mean_acc  heldout_loss  per category")
    with open(os.path.join(args.out, "run", "metrics.jsonl")) as handle:
        for record in map(json.loads, handle):
            if "accuracy_mean" in record:
                per = " ".join(f"{k} {v:.3f}" for k, v in record["accuracy"].items())
                loss = record.get("heldout_loss", float("nan"))
                print(
                    f"{record['samples_seen']:7d}  {record['accuracy_mean']:.3f}  {loss:.3f}  {per}"
                )
    print("final model, held-out accuracy by (question type, style):")
    final = accuracy_by_type(os.path.join(args.out, "run", "model"), args.heldout, args.truth)
    for (qtype, style), (count, acc) in final.items():
        print(f"  {qtype:13s} {style:18s} rows {count:3d}  accuracy {acc:.2f}")


if __name__ == "__main__":
    main()

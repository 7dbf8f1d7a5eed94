"""SFT and GRPO at real model size on one GPU: samples/s, tokens/s and peak GPU memory.

The model has Qwen2.5-VL-3B's text and vision sizes (`TinyConfig.qwen25_vl_3b_dims`: hidden
2048 x 36 layers, vision 1280 x 32; random weights, built from the config on the GPU; our
small vocabulary) and sees pictures at `--image-side` (448: 256 tokens an image, 1,024 a
video of 8 frames). Three runs on the same synthetic rows, one after another in this process,
each from the freshly built model, with the GPU's peak memory reset before each:

- ours: training.sft's loop in one process on the GPU (bf16 weights, AdamW, `--batch` rows a
  step, answer-only loss), the loop Ray Train runs on each worker;
- GRPO: training.grpo's loop (TRL `GRPOTrainer`, HF `generate` rollouts) for `--grpo-steps`
  steps of 2 prompts x 8 generations, with its reference model for the KL term;
- reference: a plain HF `Trainer` on the same rows, encodings, batch and bf16 weights; the
  ratio is what our loop costs over it.

Without a GPU it runs the same code on the CPU; `--size micro` makes that a smoke run:

    python bench/train_gpu.py --out /dev/shm/train_gpu                        # on a GPU
    python bench/train_gpu.py --size micro --image-side 56 --sft-steps 3 --grpo-steps 2 \\
        --out /tmp/train_gpu                                                   # CPU check
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench.train import synthetic_rows  # noqa: E402
from training.tiny_models import TinyConfig  # noqa: E402


def build_model(root: str, size: TinyConfig, side: int) -> str:
    """Build the model on the GPU when there is one (random init there is seconds, not
    minutes), save it, and set the processor to resize every picture to side x side."""
    import torch

    from bench.sft_probe import upscale_pictures
    from training.tiny_models import build_tiny_qwen2_vl

    path = os.path.join(root, "model")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        build_tiny_qwen2_vl(path, size)
    upscale_pictures(path, side)
    return path


def parameters(model_path: str) -> int:
    from safetensors import safe_open

    total = 0
    for name in os.listdir(model_path):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(model_path, name), "pt") as handle:
                total += sum(int(np.prod(handle.get_slice(k).get_shape())) for k in handle.keys())
    return total


class _Memory:
    """Peak GPU memory of a block (GiB), 0 without a GPU."""

    def __enter__(self):
        import torch

        gc.collect()
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.peak_gib = 0.0
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            self.peak_gib = torch.cuda.max_memory_allocated() / 2**30
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


def token_counts(model_path: str, rows_path: str, n: int) -> list[int]:
    """Tokens of each of the first `n` rows as the processor encodes them (0: not encoded)."""
    from transformers import AutoProcessor

    from operators.vlm_inputs import InputsConfig
    from training.evaluate import encode_one

    processor = AutoProcessor.from_pretrained(model_path, local_files_only=True)
    rows = pq.read_table(rows_path).slice(0, n).to_pylist()
    encodings = [encode_one(processor, row, InputsConfig())[0] for row in rows]
    return [len(e) if e is not None else 0 for e in encodings]


def run_ours(model: str, rows: str, out: str, batch: int, steps: int, threads: int) -> dict:
    from training.sft import SftConfig, train_loop_per_worker

    config = SftConfig(
        model=model,
        rows=rows,
        out=os.path.join(out, "sft"),
        batch_size=batch,
        learning_rate=1e-5,
        max_steps=steps,
        eval_every=10**9,
        threads=threads,
    )
    with _Memory() as memory:
        progress = train_loop_per_worker(dataclasses.asdict(config))
    return {
        "samples": progress["samples_seen"],
        "loop_s": progress["train_s"],
        "samples_per_s": progress["samples_seen"] / progress["train_s"],
        "loss": progress["loss"],
        "peak_gib": memory.peak_gib,
    }


def run_reference(model_path: str, rows: str, out: str, batch: int, steps: int) -> dict:
    """A plain HF `Trainer` on the same rows and encodings, bf16 weights on a GPU."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from bench.train import reference_trainer

    cuda = torch.cuda.is_available()
    processor = AutoProcessor.from_pretrained(model_path, local_files_only=True)
    table = pq.read_table(rows).slice(0, batch * steps)
    with _Memory() as memory:
        model = AutoModelForImageTextToText.from_pretrained(
            model_path, local_files_only=True, dtype=torch.bfloat16 if cuda else torch.float32
        )
        trainer = reference_trainer(
            model,
            processor,
            table,
            os.path.join(out, "hf"),
            batch,
            use_cpu=not cuda,
            max_steps=steps,
            learning_rate=1e-5,
        )
        trainer.train()
        runtime = trainer.state.log_history[-1]["train_runtime"]
        del trainer, model
    return {
        "samples": batch * steps,
        "loop_s": runtime,
        "samples_per_s": batch * steps / runtime,
        "peak_gib": memory.peak_gib,
    }


def run_grpo(model: str, rows: str, out: str, steps: int, threads: int) -> dict:
    from training.grpo import GrpoConfig, train_loop_per_worker

    config = GrpoConfig(
        model=model, rows=rows, out=os.path.join(out, "grpo"), max_steps=steps, threads=threads
    )
    started = time.time()
    with _Memory() as memory:
        metrics = train_loop_per_worker(dataclasses.asdict(config))
    completions = steps * config.prompts_per_step * config.num_generations
    return {
        "steps": steps,
        "completions": completions,
        "loop_s": metrics["train_runtime"],
        "completions_per_s": completions / metrics["train_runtime"],
        "total_s": time.time() - started,
        "peak_gib": memory.peak_gib,
    }


def main(argv: list[str] | None = None) -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="working folder (a RAM disk keeps saves fast)")
    p.add_argument("--size", choices=("real", "micro"), default="real")
    p.add_argument("--image-side", type=int, default=448)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--sft-steps", type=int, default=24)
    p.add_argument("--grpo-steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=4, help="torch CPU threads (encoding)")
    p.add_argument("--skip", nargs="*", default=(), choices=("ours", "reference", "grpo"))
    args = p.parse_args(argv)
    size = TinyConfig.qwen25_vl_3b_dims() if args.size == "real" else TinyConfig.micro()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    report: dict = {"device": device, "torch": torch.__version__, "batch": args.batch}
    started = time.time()
    synthetic_rows(args.out, args.batch * args.sft_steps + 16)
    rows = os.path.join(args.out, "rows.parquet")
    report["rows_s"] = round(time.time() - started, 1)
    started = time.time()
    model = build_model(args.out, size, args.image_side)
    report["build_s"] = round(time.time() - started, 1)
    report["parameters"] = parameters(model)
    started = time.time()
    tokens = token_counts(model, rows, args.batch * args.sft_steps)
    report["encode_s_per_row"] = (time.time() - started) / len(tokens)  # CPU, `threads`
    report["tokens_per_row_mean"] = float(np.mean(tokens))
    report["tokens_per_row_max"] = int(max(tokens))
    runs = {
        "ours": lambda: run_ours(model, rows, args.out, args.batch, args.sft_steps, args.threads),
        "grpo": lambda: run_grpo(model, rows, args.out, args.grpo_steps, args.threads),
        "reference": lambda: run_reference(model, rows, args.out, args.batch, args.sft_steps),
    }
    for name, run in runs.items():
        if name in args.skip:
            continue
        report[name] = run()
        if name in ("ours", "reference"):
            report[name]["tokens_per_s"] = report[name]["samples_per_s"] * np.mean(tokens)
        print(f"[train_gpu] {name}: {json.dumps(report[name])}", flush=True)
    if "ours" in report and "reference" in report:
        report["ours_over_reference"] = (
            report["ours"]["samples_per_s"] / report["reference"]["samples_per_s"]
        )
    print(json.dumps(report, indent=1), flush=True)
    with open(os.path.join(args.out, "report.json"), "w") as handle:
        json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()

"""bench/train_gpu.py, the real-size GPU benchmark, runs end to end at micro size on the CPU:
our SFT loop and TRL's GRPO in one plain process (no Ray Train session), and the HF Trainer
reference, each counting the samples it was given."""

from __future__ import annotations

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench():
    spec = importlib.util.spec_from_file_location(
        "train_gpu", os.path.join(ROOT, "bench", "train_gpu.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_gpu_bench_runs_all_three_at_micro_size(tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText

    out = str(tmp_path / "bench")
    argv = ["--size", "micro", "--image-side", "56", "--batch", "4", "--sft-steps", "3"]
    _bench().main([*argv, "--grpo-steps", "2", "--threads", "1", "--out", out])
    with open(os.path.join(out, "report.json")) as handle:
        report = json.load(handle)
    model = AutoModelForImageTextToText.from_pretrained(os.path.join(out, "model"))
    assert report["parameters"] == sum(p.numel() for p in model.parameters())
    assert report["device"] == ("CPU" if not torch.cuda.is_available() else report["device"])
    # 64x64 pictures at 56x56 are 4 tokens; every row encodes (the pool's defects were
    # quarantined at ingest), so no row counts 0.
    assert 0 < report["tokens_per_row_mean"] <= report["tokens_per_row_max"] < 512
    assert report["ours"]["samples"] == report["reference"]["samples"] == 4 * 3
    assert 0 < report["ours"]["loss"] < 10
    # The one-process SFT run kept its checkpoint and final model under OUT/sft.
    assert os.path.isdir(os.path.join(out, "sft", "checkpoints", "step-00000003"))
    assert os.path.isfile(os.path.join(out, "sft", "model", "config.json"))
    # GRPO: 2 steps x 2 prompts x 8 generations.
    assert report["grpo"]["completions"] == 32
    assert report["grpo"]["completions_per_s"] > 0

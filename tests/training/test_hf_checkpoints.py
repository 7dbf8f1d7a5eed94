"""HF checkpoints as Ray Train checkpoints (no Ray here): each file of a save is uploaded by
exactly one rank, RNG states by their own rank, and the resume step is read from the folder."""

from __future__ import annotations

import json

from training.hf_checkpoints import _owned_by, latest_checkpoint, resumed_step

SAVE = [  # what GRPOTrainer wrote in checkpoint-N with 2 ranks (tests/training/test_grpo.py)
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "optimizer.pt",
    "processor_config.json",
    "rng_state_0.pth",
    "rng_state_1.pth",
    "scheduler.pt",
    "tokenizer.json",
    "tokenizer_config.json",
    "trainer_state.json",
    "training_args.bin",
]


def test_each_file_is_uploaded_by_exactly_one_rank():
    owners = {name: [r for r in range(2) if _owned_by(name, r)] for name in SAVE}
    assert owners["rng_state_1.pth"] == [1]
    assert all(owners[n] == [0] for n in SAVE if n != "rng_state_1.pth")
    # One process: HF names its RNG state without a rank; rank 0 uploads everything.
    single = [n for n in SAVE if not n.startswith("rng_state_")] + ["rng_state.pth"]
    assert all(_owned_by(n, 0) for n in single)
    # Rank 3 of 4 uploads its RNG state only, never rank 0's files or a neighbour's state.
    assert [n for n in SAVE + ["rng_state_3.pth"] if _owned_by(n, 3)] == ["rng_state_3.pth"]


def test_resumed_step_reads_the_trainer_state(tmp_path):
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 7, "epoch": 0.5}))
    assert resumed_step(str(tmp_path)) == 7
    assert resumed_step(None) == -1  # a fresh run: logs start empty
    assert latest_checkpoint(in_ray=False) is None  # one process: no Ray checkpoint to resume

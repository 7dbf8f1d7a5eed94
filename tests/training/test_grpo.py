"""GRPO: rows -> TRL dataset, and TRL's GRPOTrainer on the micro Qwen2-VL, in one process and
under Ray Train. A model briefly fine-tuned on the rows answers some of them when sampling,
so rewards vary within groups and GRPO has a gradient."""

from __future__ import annotations

import dataclasses
import json

import pyarrow.parquet as pq
import pytest
import torch

from training.grpo import (
    GrpoConfig,
    grpo_dataset,
    run_grpo,
    train_loop_per_worker,
    vision_token_ids,
)


def test_dataset_rows_become_prompts_images_answers(pool_rows):
    rows = pool_rows.to_pylist()
    video = next(r for r in rows if r["media_type"] == "video")
    image = next(r for r in rows if r["media_type"] == "image")
    dataset, skipped = grpo_dataset([video, image], num_frames=4)
    assert skipped == 0 and dataset["id"] == [video["id"], image["id"]]
    assert [len(x) for x in dataset["images"]] == [4, 1]  # a video's frames, as images
    assert dataset["answer"] == [video["messages"][-1]["content"], image["messages"][-1]["content"]]
    prompt = dataset[0]["prompt"]
    assert [t["role"] for t in prompt] == ["user"] and "<video>" not in prompt[0]["content"]
    assert prompt[0]["content"] in video["messages"][0]["content"]


def test_vision_tokens_are_suppressed(micro_model):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(micro_model)
    ids = vision_token_ids(processor)
    assert processor.image_token_id in ids and processor.video_token_id in ids
    assert processor.tokenizer.convert_tokens_to_ids("<|vision_start|>") in ids
    assert processor.tokenizer.convert_tokens_to_ids("<|im_end|>") not in ids


def _weights(path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path, local_files_only=True).state_dict()


def test_grpo_one_process_rewards_and_updates(warm_model, tmp_path):
    model, rows = warm_model
    config = GrpoConfig(
        model=model,
        rows=rows,
        out=str(tmp_path),
        heldout=rows,
        max_steps=3,
        num_generations=4,
        prompts_per_step=2,
        learning_rate=1e-3,
        eval_every=2,
        rewards=("accuracy", "format"),
    )
    train_loop_per_worker(dataclasses.asdict(config))
    records = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    train = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(0.0 <= r["reward"] <= 1.0 for r in train)  # accuracy in [0,1], format 0 here
    assert any(r["reward_std"] > 0 for r in train)  # groups disagree: there is a gradient
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["samples_seen"] for r in evals] == [0, 2, 4, 6] and evals[0]["heldout_rows"] == 8
    before, after = _weights(model), _weights(tmp_path / "model")
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_grpo_under_ray_train(ray_session, warm_model, tmp_path):
    model, rows = warm_model
    config = GrpoConfig(
        model=model,
        rows=rows,
        out=str(tmp_path),
        heldout=rows,
        max_steps=2,
        num_generations=4,
        prompts_per_step=1,
        learning_rate=1e-3,
        eval_every=2,
        save_steps=1,
        record_ids=True,
    )
    result = run_grpo(config, num_workers=2, name="grpo-test")
    assert result.checkpoint is not None
    # Uninterrupted order: step s, rank r samples row 2s + r (no shuffle; the kill-resume
    # test holds a resumed run to the same).
    ids = pq.read_table(rows).column("id").to_pylist()
    for rank in (0, 1):
        steps = [json.loads(x) for x in open(tmp_path / "steps" / f"rank-{rank}.jsonl")]
        assert steps == [{"step": s, "ids": [ids[2 * s + rank]]} for s in range(2)]
    records = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2]
    assert [r["samples_seen"] for r in records if r["event"] == "eval"] == [0, 2, 4]
    assert (tmp_path / "model" / "config.json").exists()

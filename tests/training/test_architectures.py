"""The architecture matrix: a tiny random-weight model of each architecture users bring
(training/tiny_archs.py), loaded by path, through every model path of the runtime and of
training. Values are checked where random weights still decide them: media change the loss,
shuffled frames change it, masked pixels change it, greedy decoding repeats itself, attention
on vision is zero without vision, a trained step changes the weights, a reload gives the
same losses."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from operators.ost import OneStepUtility, OstConfig
from operators.pism import PismConfig, mask_media
from operators.vlm_inputs import decode_media, encode_rows, frame_order
from operators.vlm_runtime import RuntimeConfig, VLMRuntime
from training.tiny_archs import build_architecture

MATRIX = ("qwen2_5_vl", "qwen3_vl", "smolvlm", "llava_onevision", "internvl", "gemma3")
FRAMES = 4


@pytest.fixture(scope="module", params=MATRIX)
def arch(request, tmp_path_factory):
    """(name, model dir, runtime) of one architecture."""
    torch.set_num_threads(1)
    path = build_architecture(request.param, str(tmp_path_factory.mktemp(request.param)))
    return request.param, path, VLMRuntime(RuntimeConfig(path, num_frames=FRAMES))


@pytest.fixture(scope="module")
def rows(pool_rows) -> list[dict]:
    """An image row, a video row and a text-only row of the synthetic pool."""
    pylist = pool_rows.to_pylist()
    image, video = (next(r for r in pylist if r["media_type"] == k) for k in ("image", "video"))
    messages = [{**m, "content": m["content"].replace("<image>", "")} for m in image["messages"]]
    text = {**image, "id": image["id"] + "-text", "media_type": "text", "media": []}
    return [image, video, {**text, "messages": messages}]


@pytest.fixture(scope="module")
def rows_file(rows, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("matrix_rows") / "rows.parquet"
    ordered = [{**row, "position": k} for k, row in enumerate(rows)]  # training/data.py order
    pq.write_table(pa.Table.from_pylist(ordered), path)
    return str(path)


def _encode(runtime, rows, media):
    out = encode_rows(runtime.processor, rows, media, runtime.config.inputs)
    assert all(hasattr(e, "prompt_ids") for e in out), out
    return out


def test_losses_with_and_without_media_shuffled_and_masked(arch, rows):
    _, _, runtime = arch
    media = [decode_media(r, FRAMES) for r in rows]
    image, video = media[0], media[1]
    shuffled = [video[0][frame_order(FRAMES, rows[1]["id"], "shuffled")]]
    masked = mask_media(image, 0.5, PismConfig(), rows[0]["id"], 0)
    variants = [media[0], media[1], media[2], None, None, shuffled, masked]
    owners = [0, 1, 2, 0, 1, 1, 0]
    nll, _ = runtime.nll(_encode(runtime, [rows[i] for i in owners], variants))
    assert np.isfinite(nll).all() and (nll > 0).all()
    loss_image, loss_video, _, blind_image, blind_video, loss_shuffled, loss_masked = nll
    assert abs(loss_image - blind_image) > 1e-5 and abs(loss_video - blind_video) > 1e-5
    assert abs(loss_shuffled - loss_video) > 1e-6  # frame order reaches the model
    assert abs(loss_masked - loss_image) > 1e-6  # PISM's masked pixels reach the model
    again, _ = runtime.nll(_encode(runtime, rows, media))  # batch-independent
    np.testing.assert_allclose(again, nll[:3], rtol=1e-4, atol=1e-5)


def test_generation_and_attention_ratios(arch, rows):
    _, _, runtime = arch
    encodings = _encode(runtime, rows, [decode_media(r, FRAMES) for r in rows])
    greedy = runtime.generate(encodings, max_new_tokens=4)
    assert greedy == runtime.generate(encodings, max_new_tokens=4)
    assert all(len(g) == 1 and 1 <= len(g[0]) <= 4 for g in greedy)
    sampled = runtime.generate(encodings, 4, num_return_sequences=3, do_sample=True)
    assert [len(s) for s in sampled] == [3, 3, 3]
    ratios = runtime.attention_ratios(encodings)
    for ratio, encoding in zip(ratios, encodings, strict=True):
        assert ratio.shape == (runtime.num_layers, len(encoding.answer_ids))
        assert np.isfinite(ratio).all() and (ratio >= 0).all()
    assert (ratios[0] > 0).all() and (ratios[1] > 0).all()  # image, video: some mass on vision
    assert (ratios[2] == 0).all()  # text row: nothing to attend to


def test_ost_gradient(arch, rows, rows_file):
    _, path, _ = arch
    config = OstConfig(
        RuntimeConfig(path, num_frames=FRAMES), pool=rows_file, target_size=3, projection_dim=0
    )
    utility = OneStepUtility(config)
    out = utility(pa.Table.from_pylist(rows))
    values = out.column("ost_utility").to_numpy(zero_copy_only=False)
    assert out.column("ost_error").to_pylist() == [None, None, None]
    assert np.isfinite(values).all() and np.abs(values).max() > 0


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_one_sft_step_then_reload(arch, rows, rows_file, tmp_path, lora_rank):
    from transformers import AutoModelForImageTextToText

    from training.sft import SftConfig, train_loop_per_worker

    _, path, runtime = arch
    config = SftConfig(
        model=path,
        rows=rows_file,
        out=str(tmp_path),
        batch_size=3,
        max_steps=1,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        lora_rank=lora_rank,
        num_frames=FRAMES,
        eval_every=10**6,
    )
    progress = train_loop_per_worker(dataclasses.asdict(config))
    assert progress["step"] == 1 and progress["skipped"] == 0
    before = runtime.model.state_dict()
    after = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "model")).state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed
    if lora_rank:
        assert all("language_model" in k or "text_model" in k for k in changed)
    reloaded = VLMRuntime(RuntimeConfig(str(tmp_path / "model"), num_frames=FRAMES))
    media = [decode_media(r, FRAMES) for r in rows]
    trained, _ = reloaded.nll(_encode(reloaded, rows, media))
    base, _ = runtime.nll(_encode(runtime, rows, media))
    assert np.isfinite(trained).all() and not np.allclose(trained, base)


def test_one_grpo_step(arch, rows_file, tmp_path):
    from transformers import AutoModelForImageTextToText

    from training.grpo import GrpoConfig, train_loop_per_worker

    name, path, runtime = arch
    config = GrpoConfig(
        model=path,
        rows=rows_file,
        out=str(tmp_path),
        max_steps=1,
        num_generations=2,
        prompts_per_step=1,
        max_completion_length=4,
        learning_rate=1e-2,
        num_frames=FRAMES,
        rewards=("format",),
    )
    if name == "llava_onevision":  # an explicit refusal, before any model is loaded
        with pytest.raises(ValueError, match="GRPO does not support llava_onevision: TRL"):
            train_loop_per_worker(dataclasses.asdict(config))
        return
    train_loop_per_worker(dataclasses.asdict(config))
    records = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in records if r["event"] == "train"] == [1]
    after = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "model"))
    assert type(after) is type(runtime.model)

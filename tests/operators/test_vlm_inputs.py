"""Rows of our schema -> model inputs: chat template, media expansion, answer-only labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions, RowError
from operators.vlm_inputs import (
    IGNORE_INDEX,
    InputsConfig,
    collate,
    decode_media,
    encode_row,
    encode_rows,
    frame_order,
)
from training.tiny_models import TinyConfig, build_tiny_llava, build_tiny_qwen2_vl

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from transformers import AutoProcessor

    path = build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("qwen")), TinyConfig.micro())
    return AutoProcessor.from_pretrained(path)


@pytest.fixture(scope="module")
def rows(small_pool):
    options = RecordOptions(media_root=str(small_pool))
    tables = [t for t, _ in iter_chunk_tables(str(small_pool / "pool.jsonl"), options)]
    return [r for t in tables for r in t.to_pylist()]


def _first(rows, media_type):
    return next(r for r in rows if r["media_type"] == media_type)


def test_labels_cover_the_answer_and_end_of_turn_only(processor, rows):
    row = _first(rows, "image")
    enc = encode_row(processor, row, decode_media(row, 8))
    batch = collate([enc], processor)
    labels = batch.labels[0]
    answer_ids = labels[labels != IGNORE_INDEX].tolist()
    assert processor.tokenizer.decode(answer_ids) == row["answer"] + "<|im_end|>"
    # The labelled tokens are the last ones of the input, right after "assistant\n".
    assert batch.inputs["input_ids"][0, -len(answer_ids) :].tolist() == answer_ids
    prompt = processor.tokenizer.decode(batch.inputs["input_ids"][0, : -len(answer_ids)])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert prompt.count("<|image_pad|>") == 4 and "<image>" not in prompt
    assert int(batch.vision_mask.sum()) == 4


def test_video_and_blind_variants(processor, rows):
    row = _first(rows, "video")
    media = decode_media(row, 8)
    assert media[0].shape == (8, 64, 64, 3)
    video = encode_row(processor, row, media)
    blind = encode_row(processor, row, None)
    assert video.prompt_ids.count(processor.video_token_id) == 16
    assert processor.video_token_id not in blind.prompt_ids
    assert "pixel_values_videos" in video.media and not blind.media
    assert video.answer_ids == blind.answer_ids


def test_padding_sides_keep_content_and_mask_pads(processor, rows):
    picked = [_first(rows, "image"), _first(rows, "video")]
    encs = [encode_row(processor, r, decode_media(r, 8)) for r in picked]
    right, left = collate(encs, processor, "right"), collate(encs, processor, "left")
    for k, enc in enumerate(encs):
        n = len(enc)
        assert right.inputs["attention_mask"][k].sum() == n
        assert right.inputs["input_ids"][k, :n].tolist() == enc.prompt_ids + enc.answer_ids
        assert left.inputs["input_ids"][k, -n:].tolist() == enc.prompt_ids + enc.answer_ids
        assert (right.labels[k, n:] == IGNORE_INDEX).all()
    # Media tensors of both rows are concatenated in row order.
    assert right.inputs["image_grid_thw"].shape[0] == 1
    assert right.inputs["video_grid_thw"].shape[0] == 1


def test_row_errors_have_reasons(processor, rows):
    row = dict(_first(rows, "image"))
    two = [{"role": "user", "content": "<image> <image> Q?"}, {"role": "assistant", "content": "a"}]
    with pytest.raises(RowError) as error:
        encode_row(processor, {**row, "messages": two}, decode_media(row, 8))
    assert error.value.reason == "placeholder_mismatch"
    no_answer = {**row, "messages": row["messages"][:1], "answer": None}
    with pytest.raises(RowError) as error:
        encode_row(processor, no_answer, None)
    assert error.value.reason == "no_answer"
    with pytest.raises(RowError) as error:
        encode_row(processor, row, decode_media(row, 8), InputsConfig(max_tokens=5))
    assert error.value.reason == "too_long"


def test_frame_orders():
    shuffled = frame_order(8, "row-1", "shuffled")
    assert sorted(shuffled) == list(range(8)) and shuffled != list(range(8))
    assert shuffled == frame_order(8, "row-1", "shuffled")  # seeded by the row key
    assert frame_order(8, "x", "reversed") == list(range(8))[::-1]
    assert frame_order(8, "x", "single") == [4]
    assert frame_order(2, str(0), "shuffled") == [1, 0]


def test_video_becomes_frames_for_image_only_processor(tmp_path, rows):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(build_tiny_llava(str(tmp_path / "llava")))
    row = _first(rows, "video")
    enc = encode_row(processor, row, decode_media(row, 4), InputsConfig(num_frames=4))
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert enc.prompt_ids.count(image_id) == 4 * 16  # 4 frames x 16 patches
    assert enc.media["pixel_values"].shape[0] == 4
    assert np.isfinite(enc.media["pixel_values"].numpy()).all()


def _same(a, b):
    assert a.prompt_ids == b.prompt_ids and a.answer_ids == b.answer_ids
    assert a.token_fields == b.token_fields
    assert sorted(a.media) == sorted(b.media)
    for key in a.media:
        assert torch.equal(torch.as_tensor(a.media[key]), torch.as_tensor(b.media[key]))


def test_batched_encoding_equals_row_by_row(processor, rows):
    picked = [r for r in rows if r["media_type"] == "image"][:3]
    picked += [r for r in rows if r["media_type"] == "video"][:3]
    media = [decode_media(r, 8) for r in picked]
    bad = {**picked[0], "messages": picked[0]["messages"][:1], "answer": None}
    batch_rows_ = [*picked, picked[1], bad]
    batch_media = [*media, None, media[0]]
    encoded = encode_rows(processor, batch_rows_, batch_media)
    for row, m, enc in zip(batch_rows_[:-1], batch_media[:-1], encoded[:-1], strict=True):
        _same(enc, encode_row(processor, row, m))
    assert isinstance(encoded[-1], RowError) and encoded[-1].reason == "no_answer"


def test_batched_encoding_equals_row_by_row_for_llava(tmp_path, rows):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(build_tiny_llava(str(tmp_path / "llava")))
    picked = [r for r in rows if r["media_type"] == "image"][:2]
    picked += [r for r in rows if r["media_type"] == "video"][:1]
    assert [r["media_type"] for r in picked] == ["image", "image", "video"]
    config = InputsConfig(num_frames=4)
    media = [decode_media(r, 4) for r in picked]
    for row, m, enc in zip(
        picked, media, encode_rows(processor, picked, media, config), strict=True
    ):
        _same(enc, encode_row(processor, row, m, config))  # asserts ids, labels, media equal

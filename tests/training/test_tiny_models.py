"""The tiny offline models load back through the Auto classes a real checkpoint uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.tiny_models import (
    QWEN_SPECIAL_TOKENS,
    TinyConfig,
    build_tiny_llava,
    build_tiny_qwen2_vl,
)

torch.set_num_threads(1)


def _load(path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return _load(build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("qwen")), TinyConfig.micro()))


def test_qwen_loads_as_real_architecture(qwen):
    model, processor = qwen
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2VLProcessor"
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS))
    assert ids == list(range(len(QWEN_SPECIAL_TOKENS)))  # special tokens first, in order
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_qwen_vision_token_counts_and_forward(qwen):
    model, processor = qwen
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "video"}]}]
    text = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    image = np.full((64, 64, 3), 200, np.uint8)
    video = np.zeros((8, 64, 64, 3), np.uint8)
    inputs = processor(text=[text], images=[image], videos=[video], return_tensors="pt")
    ids = inputs["input_ids"][0]
    assert int((ids == model.config.image_token_id).sum()) == 4  # 64 px -> 56 px -> 2x2 merged
    assert int((ids == model.config.video_token_id).sum()) == 16  # 8 frames -> 4 x 2 x 2
    assert "mm_token_type_ids" in inputs
    logits = model(**inputs).logits
    assert logits.shape == (1, len(ids), len(processor.tokenizer))
    assert torch.isfinite(logits).all()


def test_llava_loads_and_counts_cls_token(tmp_path):
    model, processor = _load(build_tiny_llava(str(tmp_path / "llava")))
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[np.zeros((64, 64, 3), np.uint8)], return_tensors="pt")
    count = int((inputs["input_ids"][0] == model.config.image_token_id).sum())
    assert count == (56 // 14) ** 2  # CLS added then dropped by the "default" strategy
    assert torch.isfinite(model(**inputs).logits).all()

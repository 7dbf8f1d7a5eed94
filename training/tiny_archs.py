"""Tiny random-weight models of the VLM architectures users bring, built offline.

Each builder makes the real config class of one architecture at toy sizes, a byte-level BPE
tokenizer trained in process with that architecture's special tokens, and the
architecture's own processor (image / video processors at small resolutions), and saves both
with `save_pretrained`, so the model loads by path through `AutoModelForImageTextToText` /
`AutoProcessor` exactly as a released checkpoint does. `ARCHITECTURES` names them; the
architecture-matrix test (tests/training/test_architectures.py) takes each through every
model path of the runtime, SFT and GRPO. Qwen2-VL and LLaVA live in training/tiny_models.py.
"""

from __future__ import annotations

import os

from training.tiny_models import (
    QWEN_CHAT_TEMPLATE,
    QWEN_SPECIAL_TOKENS,
    TinyConfig,
    _corpus,
    _mrope_section,
    build_tiny_llava,
    build_tiny_qwen2_vl,
    train_bpe_tokenizer,
)

__all__ = ["ARCHITECTURES", "build_architecture"]


def _text_config(config: TinyConfig, vocab: int, **extra) -> dict:
    """The decoder sizes every architecture shares."""
    return {
        "vocab_size": vocab,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "max_position_embeddings": 4096,
        **extra,
    }


def _save(model, processor, out: str, eos: int, pad: int) -> str:
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _qwen_ids(tokenizer) -> dict[str, int]:
    return {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}


def _qwen_text(config: TinyConfig, tokenizer, ids: dict[str, int], **extra) -> dict:
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    rope["mrope_section"] = _mrope_section(config.head_dim)
    return _text_config(
        config,
        len(tokenizer),
        rope_parameters=rope,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        **extra,
    )


def _qwen_markers(ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _qwen_vision(config: TinyConfig, patch: int, **extra) -> dict:
    """The Qwen2.5 / Qwen3 vision tower at toy sizes (2x2 merge, 2-frame temporal patches)."""
    return {
        "depth": config.vision_depth,
        "hidden_size": config.vision_embed_dim,
        "intermediate_size": config.vision_embed_dim * config.vision_mlp_ratio,
        "num_heads": config.vision_heads,
        "out_hidden_size": config.hidden_size,
        "patch_size": patch,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        **extra,
    }


def build_tiny_qwen2_5_vl(out: str, config: TinyConfig, texts=None) -> str:
    """Qwen2.5-VL: windowed-attention ViT (one full-attention block) + Qwen2 decoder."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessorPil,
        Qwen2VLVideoProcessor,
    )

    tokenizer = train_bpe_tokenizer(_corpus(texts), config.vocab_size)
    ids = _qwen_ids(tokenizer)
    model_config = Qwen2_5_VLConfig(
        text_config=_qwen_text(config, tokenizer, ids),
        vision_config=_qwen_vision(
            config, 14, fullatt_block_indexes=[config.vision_depth - 1], window_size=56
        ),
        tie_word_embeddings=True,
        **_qwen_markers(ids),
    )
    torch.manual_seed(config.seed)
    model = Qwen2_5_VLForConditionalGeneration(model_config)
    pixels = {"min_pixels": 28 * 28, "max_pixels": config.image_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels, cap_pixels_per_frame=True),
        tokenizer=tokenizer,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return _save(model, processor, out, ids["<|im_end|>"], ids["<|endoftext|>"])


def build_tiny_qwen3_vl(out: str, config: TinyConfig, texts=None) -> str:
    """Qwen3-VL: 16-pixel patches, DeepStack vision features, interleaved M-RoPE and
    per-frame timestamps in the video prompt."""
    import torch
    from transformers import (
        Qwen2VLImageProcessorPil,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = train_bpe_tokenizer(_corpus(texts), config.vocab_size)
    ids = _qwen_ids(tokenizer)
    text = _qwen_text(config, tokenizer, ids, head_dim=config.head_dim)
    text["rope_parameters"]["mrope_interleaved"] = True
    model_config = Qwen3VLConfig(
        text_config=text,
        vision_config=_qwen_vision(
            config, 16, num_position_embeddings=64, deepstack_visual_indexes=[0]
        ),
        tie_word_embeddings=True,
        **_qwen_markers(ids),
    )
    torch.manual_seed(config.seed)
    model = Qwen3VLForConditionalGeneration(model_config)
    side = 32 * 32
    size = {"shortest_edge": side, "longest_edge": max(side, config.image_pixels)}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(size=size, patch_size=16),
        video_processor=Qwen3VLVideoProcessor(
            size=size, patch_size=16, do_sample_frames=False, cap_pixels_per_frame=True
        ),
        tokenizer=tokenizer,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return _save(model, processor, out, ids["<|im_end|>"], ids["<|endoftext|>"])


# ChatML with `<image>` / `<video>` placeholders that the processor expands.
PLACEHOLDER_CHAT_TEMPLATE = QWEN_CHAT_TEMPLATE.replace(
    "<|vision_start|><|image_pad|><|vision_end|>", "<image>"
).replace("<|vision_start|><|video_pad|><|vision_end|>", "<video>")
CHATML = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _tokenizer(config: TinyConfig, texts, extra: tuple[str, ...], named=None):
    """ChatML specials (pad 0, end-of-turn 2) then the architecture's own, and their ids."""
    specials = CHATML + extra
    tokenizer = train_bpe_tokenizer(_corpus(texts), config.vocab_size, specials, named)
    return tokenizer, {t: tokenizer.convert_tokens_to_ids(t) for t in specials}


def _siglip(config: TinyConfig, side: int, patch: int) -> dict:
    return {
        "model_type": "siglip_vision_model",
        "hidden_size": config.vision_embed_dim,
        "intermediate_size": config.vision_embed_dim * config.vision_mlp_ratio,
        "num_hidden_layers": config.vision_depth,
        "num_attention_heads": config.vision_heads,
        "image_size": side,
        "patch_size": patch,
    }


def build_tiny_smolvlm(out: str, config: TinyConfig, texts=None) -> str:
    """SmolVLM (Idefics3): SigLIP patches, pixel-shuffle connector, Llama decoder; a video is
    a run of timestamped frames. Images are not split into tiles (one global view)."""
    import torch
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    extra = ("<image>", "<video>", "<fake_token_around_image>", "<global-img>")
    extra += ("<end_of_utterance>",)
    tokenizer, ids = _tokenizer(config, texts, extra)
    side, patch, scale = 64, 16, 2
    model_config = SmolVLMConfig(
        text_config=_text_config(
            config,
            len(tokenizer),
            model_type="llama",
            pad_token_id=0,
            eos_token_id=ids["<|im_end|>"],
        ),
        vision_config={k: v for k, v in _siglip(config, side, patch).items() if k != "model_type"},
        scale_factor=scale,
        image_token_id=ids["<image>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(config.seed)
    model = SmolVLMForConditionalGeneration(model_config)
    edge = {"longest_edge": side}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessorPil(
            do_image_splitting=False, size=edge, max_image_size=edge
        ),
        video_processor=SmolVLMVideoProcessor(
            size=edge, max_image_size=edge, do_sample_frames=False
        ),
        tokenizer=tokenizer,
        image_seq_len=(side // patch) ** 2 // scale**2,
        chat_template=PLACEHOLDER_CHAT_TEMPLATE,
    )
    return _save(model, processor, out, ids["<|im_end|>"], 0)


def build_tiny_llava_onevision(out: str, config: TinyConfig, texts=None) -> str:
    """LLaVA-OneVision: SigLIP tower, 2-layer projector, Qwen2 decoder; one base view per
    image (a single grid pinpoint), pooled frames for video."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer, ids = _tokenizer(config, texts, ("<image>", "<video>"))
    side, patch = 56, 14
    model_config = LlavaOnevisionConfig(
        text_config=_text_config(
            config,
            len(tokenizer),
            model_type="qwen2",
            pad_token_id=0,
            eos_token_id=ids["<|im_end|>"],
        ),
        vision_config=_siglip(config, side, patch),
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        image_grid_pinpoints=[[side, side]],
        tie_word_embeddings=True,
    )
    torch.manual_seed(config.seed)
    model = LlavaOnevisionForConditionalGeneration(model_config)
    size = {"height": side, "width": side}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessorPil(
            size=size, image_grid_pinpoints=[[side, side]]
        ),
        video_processor=LlavaOnevisionVideoProcessor(size=size, do_sample_frames=False),
        tokenizer=tokenizer,
        num_image_tokens=(side // patch) ** 2,
        vision_feature_select_strategy="full",
        chat_template=PLACEHOLDER_CHAT_TEMPLATE,
    )
    return _save(model, processor, out, ids["<|im_end|>"], 0)


def build_tiny_internvl(out: str, config: TinyConfig, texts=None) -> str:
    """InternVL (transformers-native `InternVLForConditionalGeneration`): InternViT, pixel
    shuffle to a quarter of the patches, Qwen2 decoder; one 64 px view per image (no tiles)."""
    import torch
    from transformers import (
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    named = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tokenizer, ids = _tokenizer(
        config, texts, ("<img>", "</img>", "<IMG_CONTEXT>", "<video>", "<image>"), named
    )
    side, patch = 64, 16
    model_config = InternVLConfig(
        text_config=_text_config(
            config,
            len(tokenizer),
            model_type="qwen2",
            pad_token_id=0,
            eos_token_id=ids["<|im_end|>"],
        ),
        vision_config={
            "hidden_size": config.vision_embed_dim,
            "intermediate_size": config.vision_embed_dim * config.vision_mlp_ratio,
            "num_hidden_layers": config.vision_depth,
            "num_attention_heads": config.vision_heads,
            "image_size": [side, side],
            "patch_size": [patch, patch],
        },
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=(side // patch) ** 2 // 4,
        downsample_ratio=0.5,
        tie_word_embeddings=True,
    )
    torch.manual_seed(config.seed)
    model = InternVLForConditionalGeneration(model_config)
    size = {"height": side, "width": side}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessorPil(size=size, crop_to_patches=False),
        video_processor=InternVLVideoProcessor(size=size, do_sample_frames=False),
        tokenizer=tokenizer,
        image_seq_length=(side // patch) ** 2 // 4,
        chat_template=PLACEHOLDER_CHAT_TEMPLATE.replace("<image>", "<IMG_CONTEXT>"),
    )
    return _save(model, processor, out, ids["<|im_end|>"], 0)


def build_tiny_gemma3(out: str, config: TinyConfig, texts=None) -> str:
    """Gemma 3: SigLIP tower average-pooled to a fixed number of soft tokens, Gemma 3 decoder
    (sliding + global attention). No video input: frames go in as images."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
    )

    named = {
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
    }
    tokenizer, ids = _tokenizer(config, texts, tuple(named.values()), named)
    side, patch, tokens = 64, 16, 4
    model_config = Gemma3Config(
        text_config=_text_config(
            config,
            len(tokenizer),
            head_dim=config.head_dim,
            query_pre_attn_scalar=config.head_dim,
            sliding_window=512,
            pad_token_id=0,
            bos_token_id=0,
            eos_token_id=ids["<|im_end|>"],
        ),
        vision_config=_siglip(config, side, patch),
        mm_tokens_per_image=tokens,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    torch.manual_seed(config.seed)
    model = Gemma3ForConditionalGeneration(model_config)
    with torch.no_grad():  # initialised to zeros, which would hide the images from the model
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.02)
    template = QWEN_CHAT_TEMPLATE.replace(
        "<|vision_start|><|image_pad|><|vision_end|>", "<start_of_image>"
    )
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": side, "width": side}),
        tokenizer=tokenizer,
        image_seq_length=tokens,
        chat_template=template,
    )
    return _save(model, processor, out, ids["<|im_end|>"], 0)


ARCHITECTURES = {
    "qwen2_vl": build_tiny_qwen2_vl,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "qwen3_vl": build_tiny_qwen3_vl,
    "llava": build_tiny_llava,
    "smolvlm": build_tiny_smolvlm,
    "llava_onevision": build_tiny_llava_onevision,
    "internvl": build_tiny_internvl,
    "gemma3": build_tiny_gemma3,
}


def build_architecture(name: str, out: str, config: TinyConfig | None = None, texts=None) -> str:
    """Build the tiny model of architecture `name` (a key of ARCHITECTURES) into `out`."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](out, config or TinyConfig.micro(), texts)

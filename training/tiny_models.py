"""Tiny VLMs of real architectures, built offline, for tests, the demo and the warm-up proxy.

No hub is reachable, so a model is made from a config with random weights, a byte-level BPE
tokenizer trained in process (the Qwen special tokens first, so ids match what the processor
expects) and the architecture's own image / video processors, then saved with
`save_pretrained`. Everything downstream loads it back through `AutoModelForImageTextToText`
and `AutoProcessor`, the path a real checkpoint takes (ARCHITECTURE.md section 5).

Sizes: `TinyConfig()` is the ~1M-parameter Qwen2-VL that learns the synthetic tasks
(section 6); `TinyConfig.micro()` is a ~0.2M one for unit tests. `mrope_section` must sum to
head_dim / 2. LLaVA (CLIP vision tower) is the second architecture; its processor needs
`num_additional_image_tokens=1` for the CLS token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "QWEN_CHAT_TEMPLATE",
    "QWEN_SPECIAL_TOKENS",
    "TinyConfig",
    "build_tiny_llava",
    "build_tiny_qwen2_vl",
    "train_bpe_tokenizer",
]

# Qwen2-VL's special tokens in their released order (ids 0.. here, not 151643..).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# ChatML with Qwen2-VL's vision markers. Content is a string or a list of typed parts.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The same conversation format with LLaVA's single `<image>` placeholder.
LLAVA_CHAT_TEMPLATE = QWEN_CHAT_TEMPLATE.replace(
    "<|vision_start|><|image_pad|><|vision_end|>", "<image>"
).replace("<|vision_start|><|video_pad|><|vision_end|>", "<image>")

# Words of the synthetic tasks and of ordinary instructions, so the BPE learns useful merges.
BASE_CORPUS = (
    "What color is the circle square triangle in the image video? Which shape direction "
    "does the object move left right up down still. How many shapes are there? Answer with "
    "a single word number yes no the option's letter from the given choices directly. "
    "red green blue yellow purple orange A B C D 0 1 2 3 4 5 6 7 8 9 bar chart value tallest "
    "user assistant system word written read text picture clip watch travel moving shown "
    "appears Temporal Static "
    "cat dog sun tree car fish bird book milk star moon rain ship lamp door hat cup key box pen "
    "This small large old recent archive collection survey notebook album catalog report about "
    "geometry weather travel cooking sports music history was prepared for lessons options is"
)


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of a tiny VLM. Defaults: ~1M parameters, enough to learn the synthetic tasks."""

    vocab_size: int = 640  # BPE vocabulary incl. special tokens
    hidden_size: int = 128  # text hidden size (= vision output size)
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    vision_embed_dim: int = 64
    vision_depth: int = 2
    vision_heads: int = 2
    vision_mlp_ratio: int = 2
    image_pixels: int = 64 * 64  # max pixels per image / frame: 64x64 -> 56x56 -> 4 tokens
    dtype: str = "float32"  # weights are created and saved in this dtype
    seed: int = 0

    @classmethod
    def micro(cls) -> TinyConfig:
        """~0.2M parameters (hidden 64, 2 layers, head_dim 32): fast unit tests."""
        return cls(
            hidden_size=64,
            num_layers=2,
            num_heads=2,
            num_kv_heads=1,
            intermediate_size=128,
            vision_embed_dim=32,
            vision_depth=1,
            vision_heads=1,
        )

    @classmethod
    def qwen25_vl_3b_dims(cls) -> TinyConfig:
        """Qwen2.5-VL-3B's text and vision sizes (random weights, our small vocabulary) for
        throughput benchmarks on GPU: hidden 2048, 36 layers, 16 / 2 heads, vision 1280 x 32."""
        return cls(
            hidden_size=2048,
            num_layers=36,
            num_heads=16,
            num_kv_heads=2,
            intermediate_size=11008,
            vision_embed_dim=1280,
            vision_depth=32,
            vision_heads=16,
            vision_mlp_ratio=3,  # 3420 / 1280 in the release; Qwen2-VL needs an int
            image_pixels=448 * 448,
            dtype="bfloat16",
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def train_bpe_tokenizer(
    texts: list[str], vocab_size: int, special_tokens=QWEN_SPECIAL_TOKENS, named=None
):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts`, special tokens first.

    named: attribute -> special token (e.g. {"boi_token": "<start_of_image>"}), which some
    processors read from the tokenizer (`tokenizer.boi_token`, `tokenizer.boi_token_id`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=special_tokens[2] if len(special_tokens) > 2 else None,
        pad_token=special_tokens[0],
        model_max_length=4096,
        extra_special_tokens=dict(named or {}),
    )


def _corpus(texts: list[str] | None) -> list[str]:
    return [BASE_CORPUS] * 20 + list(texts or [])


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim / 2 rotary pairs over (time, height, width), as Qwen2-VL does (1:1.5:1.5)."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_tiny_qwen2_vl(out: str, config: TinyConfig = TinyConfig(), texts=None) -> str:
    """Build, save and return the path of a tiny `Qwen2VLForConditionalGeneration` + processor."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = train_bpe_tokenizer(_corpus(texts), config.vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    model_config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "num_hidden_layers": config.num_layers,
            "num_attention_heads": config.num_heads,
            "num_key_value_heads": config.num_kv_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": _mrope_section(config.head_dim),
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": config.vision_depth,
            "embed_dim": config.vision_embed_dim,
            "hidden_size": config.hidden_size,
            "num_heads": config.vision_heads,
            "mlp_ratio": config.vision_mlp_ratio,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(config.seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, config.dtype))
    try:
        model = Qwen2VLForConditionalGeneration(model_config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    pixels = {"min_pixels": 28 * 28, "max_pixels": config.image_pixels}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels, cap_pixels_per_frame=True),
        tokenizer=tokenizer,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_llava(out: str, config: TinyConfig | None = None, texts=None) -> str:
    """Build, save and return the path of a tiny `LlavaForConditionalGeneration` (CLIP + Llama)."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    config = config or TinyConfig.micro()
    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>")
    tokenizer = train_bpe_tokenizer(_corpus(texts), config.vocab_size, specials)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    side, patch = 56, 14
    model_config = LlavaConfig(
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": config.hidden_size,
            "intermediate_size": config.intermediate_size,
            "num_hidden_layers": config.num_layers,
            "num_attention_heads": config.num_heads,
            "num_key_value_heads": config.num_kv_heads,
            "max_position_embeddings": 4096,
            "bos_token_id": 0,
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": 0,
        },
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": config.vision_embed_dim,
            "intermediate_size": 2 * config.vision_embed_dim,
            "num_hidden_layers": max(2, config.vision_depth),
            "num_attention_heads": config.vision_heads,
            "image_size": side,
            "patch_size": patch,
        },
        image_token_id=image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=True,
    )
    torch.manual_seed(config.seed)
    model = LlavaForConditionalGeneration(model_config)
    model.generation_config.eos_token_id = model_config.text_config.eos_token_id
    model.generation_config.pad_token_id = 0
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side}
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out

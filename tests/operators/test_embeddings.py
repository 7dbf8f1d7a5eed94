"""Text embeddings (the bundled all-MiniLM-L6-v2) and visual embeddings (a tiny Qwen2-VL)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from operators.batches import vectors_of
from operators.embeddings import (
    TextEmbedConfig,
    TextEmbedder,
    VisualEmbedConfig,
    VisualEmbedder,
    embed_text,
    embed_visual,
)
from operators.media import load_image, read_video_frames

torch.set_num_threads(1)


def qa(question: str, answer: str) -> list[dict]:
    return [
        {"role": "user", "content": f"<image>\n{question}"},
        {"role": "assistant", "content": answer},
    ]


@pytest.fixture(scope="module")
def text_embedder():
    return TextEmbedder()


def test_text_embedding_is_the_sentence_model_on_the_conversation(text_embedder):
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "messages": [
                qa("What color is the car?", "Red."),
                qa("Which color does the car have?", "Red."),
                qa("Solve the integral of x squared.", "x^3 / 3"),
            ],
        }
    )
    out = text_embedder(table)
    assert out.schema.field("text_embedding").type == pa.list_(pa.float32(), 384)
    vectors, valid = vectors_of(out["text_embedding"])
    assert valid.all() and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    reference = text_embedder.model.encode(
        ["What color is the car?\nRed."], normalize_embeddings=True
    )
    assert np.allclose(vectors[0], reference[0], atol=1e-5)  # placeholder removed, turns joined
    assert vectors[0] @ vectors[1] > 0.8 > 0.3 > vectors[0] @ vectors[2]  # a real sentence model
    assert out["id"].to_pylist() == ["a", "b", "c"]


def test_text_embedding_float16_and_dict_batches(text_embedder):
    embedder = TextEmbedder(TextEmbedConfig(dtype="float16", column="emb"))
    batch = {"id": ["a"], "messages": [qa("What is it?", "A cat.")]}
    half = embedder(pa.table(batch))
    assert half.schema.field("emb").type == pa.list_(pa.float16(), 384)
    as_dict = text_embedder(batch)
    assert isinstance(as_dict, dict) and len(as_dict["text_embedding"][0]) == 384
    assert np.allclose(vectors_of(half["emb"])[0][0], as_dict["text_embedding"][0], atol=2e-3)


# ---------------------------------------------------------------- visual: a tiny Qwen2-VL


def build_tiny_qwen2_vl(path: str) -> str:
    """Save a ~0.2M-parameter Qwen2-VL with an in-process BPE tokenizer (random weights)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>"]
    special += ["<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["what color is the shape in the image"] * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    torch.manual_seed(0)
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
        ),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, patch_size=14),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
    )
    Qwen2VLForConditionalGeneration(config).save_pretrained(path)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
    )
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    return build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("tiny_qwen2_vl")))


def media_rows(pool_dir) -> pa.Table:
    """One image row, one video row, one text row and one row whose file is garbage."""
    image = sorted((pool_dir / "media" / "general").glob("*.png"))[0]
    video = sorted((pool_dir / "media" / "temporal").glob("*.mp4"))[0]
    broken = pool_dir / "broken.png"
    broken.write_bytes(b"not an image")
    return pa.table(
        {
            "id": ["img", "vid", "txt", "bad"],
            "media_type": ["image", "video", "text", "image"],
            "media": [[str(image)], [str(video)], [], [str(broken)]],
            "messages": [qa("q", "a")] * 4,
        }
    )


def test_visual_embedding_is_the_mean_pooled_vision_tower(tiny_vlm, small_pool):
    embedder = VisualEmbedder(VisualEmbedConfig(tiny_vlm, frames=4, images_per_forward=3))
    table = media_rows(small_pool)
    out = embedder(table)
    vectors, valid = vectors_of(out["visual_embedding"])
    assert valid.tolist() == [True, True, False, False]
    errors = out["visual_embedding_error"].to_pylist()
    assert errors[:3] == [None, None, None] and errors[3].startswith("undecodable_media")
    # reference: the model's own image features, mean over tokens (and over frames), unit norm
    model, processor = embedder.model, embedder.processor

    def pooled(images):
        inputs = processor.image_processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            feats = model.get_image_features(**inputs).pooler_output
        return torch.stack([f.mean(0) for f in feats]).numpy()

    image = pooled([load_image(table["media"][0][0].as_py())])[0]
    frames = read_video_frames(table["media"][1][0].as_py(), 4)[0]
    video = pooled(list(frames)).mean(0)
    for got, want in [(vectors[0], image), (vectors[1], video)]:
        assert np.allclose(got, want / np.linalg.norm(want), atol=1e-5)
    assert abs(float(vectors[0] @ vectors[1])) < 0.9999  # different media, different vectors
    assert embedder.stats == {"undecodable_media": 1, "embedded": 2}


def test_visual_embedding_isolates_a_frame_the_model_rejects(tiny_vlm):
    embedder = VisualEmbedder(VisualEmbedConfig(tiny_vlm))
    good = np.full((64, 64, 3), 90, np.uint8)
    thin = np.full((1, 200, 3), 90, np.uint8)  # HWC, not channels-first
    errors = [None, None, None]
    owners, vectors = embedder._embed_rows(
        np.array([0, 1, 2]), [good, np.zeros((0, 0, 3), np.uint8), thin], errors
    )
    assert owners.tolist() == [0, 2] and vectors.shape == (2, embedder.dim)
    assert errors[1].startswith("vision_model_error") and errors[0] is None is errors[2]
    assert np.allclose(vectors[0], embedder.embed_images([good])[0], atol=1e-5)


@pytest.mark.slow
def test_embedders_on_ray_actor_pools(ray_session, tiny_vlm, small_pool):
    table = media_rows(small_pool)
    ds = ray_session.data.from_arrow(table)
    ds = embed_visual(ds, VisualEmbedConfig(tiny_vlm), concurrency=(1, 1))
    ds = embed_text(ds, TextEmbedConfig(batch_size=8), concurrency=(1, 1))
    out = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow")))
    assert sorted(out["id"].to_pylist()) == ["bad", "img", "txt", "vid"]
    assert out["text_embedding"].null_count == 0
    assert out["visual_embedding"].null_count == 2

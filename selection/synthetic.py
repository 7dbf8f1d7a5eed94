"""A realistic synthetic descriptor table for N rows, no media: for tests and the benchmark.

It has every column the selection methods read (ARCHITECTURE.md section 2 and 4) with the
shapes real descriptors have: images and videos from a dozen sources, several QAs per video,
heavy-tailed losses with vds = loss_blind - loss, a temporal loss gap as the score stage writes it
(nats, centred near 0, larger for questions about change; `temporal_prompted` null unless
asked for, as with `prompted_temporal` off), nullable stability,
k-means clusters, PISM / CMAB difficulty, 14 mmSSR capability scores and styles, one-step
utilities, a few exact duplicates, and a few rows the proxy could not process (`model_error`
with the score stage's reasons, model descriptors NaN). Everything is vectorized so 10M rows
build in seconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators import schema
from operators.schema import MESSAGE_TYPE, STYLES, capability_column

__all__ = ["CAPABILITIES", "STYLES", "descriptor_table"]

# cap_ column suffixes: mmSSR's capability names in snake case
CAPABILITIES = tuple(capability_column(c).removeprefix("cap_") for c in schema.CAPABILITIES)
SOURCES = (
    "llava_ov_chartqa(cauldron)",
    "llava_ov_docvqa",
    "llava_ov_coco_caption_sharegpt4v",
    "llava_ov_textvqa",
    "llava_ov_geo_qa_plus",
    "llava_ov_vqav2",
    "llava_video_academic_0_30_s_youtube",
    "llava_video_academic_30_60_s_activitynet",
    "llava_video_perceptiontest_0_30_s",
    "llava_video_nextqa_0_30_s",
    "sharegpt_text",
)
SOURCE_P = np.array([0.12, 0.08, 0.1, 0.08, 0.04, 0.16, 0.12, 0.08, 0.06, 0.12, 0.04])
QUESTIONS = (
    "What color is the {} object?",
    "How many shapes are in picture {}?",
    "What is written on sign {}?",
    "What happens after the ball moves in clip {}?",
    "Which bar is tallest in chart {}? Choices:\nA. red\nB. blue",
    "Describe scene {} in detail.",
    "Is there a cat in image {}?",
    "What does the person do first and then next in video {}?",
)
ANSWERS = (
    "red {}",
    "{}",
    "yes",
    "no",
    "A",
    "the ball rolls to the left and stops near box {}",
    "a long detailed description of the scene with many objects and colors number {}",
    "very very very very good {}",
)
CATEGORIES = ("general", "chart", "ocr", "temporal", "static_video")


def _fmt(templates: tuple[str, ...], pick: np.ndarray, number: np.ndarray) -> pa.Array:
    """templates[pick] with "{}" replaced by number, vectorized through Arrow."""
    heads = pc.take(pa.array([t.split("{}")[0] for t in templates]), pa.array(pick))
    tails = pc.take(pa.array([(t.split("{}") + [""])[1] for t in templates]), pa.array(pick))
    has = pc.take(pa.array(["{}" in t for t in templates]), pa.array(pick))
    num = pc.cast(pa.array(number), pa.string())
    return pc.if_else(has, pc.binary_join_element_wise(heads, num, tails, ""), heads)


def _messages(question: pa.Array, answer: pa.Array, media_type: np.ndarray) -> pa.Array:
    n = len(question)
    prefix = pc.take(pa.array(["<image>\n", "<video>\n", ""]), pa.array(media_type))
    user = pc.binary_join_element_wise(prefix, question, "")
    content = pc.take(
        pa.concat_arrays([user, answer]), pa.array(np.arange(2 * n) % 2 * n + np.arange(2 * n) // 2)
    )
    role = pc.take(pa.array(["user", "assistant"]), pa.array(np.arange(2 * n) % 2))
    structs = pa.StructArray.from_arrays([role, content], fields=list(MESSAGE_TYPE))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), structs)


def _styles(rng: np.random.Generator, n: int) -> pa.Array:
    count = rng.choice([0, 1, 2, 3], size=n, p=[0.02, 0.6, 0.3, 0.08])
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(count, out=offsets[1:])
    style_p = np.array([0.2, 0.03, 0.15, 0.3, 0.1, 0.08, 0.05, 0.06, 0.03])
    values = pc.take(pa.array(STYLES), pa.array(rng.choice(9, size=offsets[-1], p=style_p)))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _temporal_columns(
    rng: np.random.Generator, is_video: np.ndarray, about_change: np.ndarray, prompted: bool
) -> dict:
    """`temporal_loss_gap` (0 for images / text; videos: noise of sd 0.04 nats around 0, or
    around +0.05 for questions about change, so that both signs and every GDO label occur) and
    `temporal_prompted` (GDO's 1 / 0 / 0.5 reply for videos, 0 otherwise; all null unless
    `prompted`)."""
    n = len(is_video)
    gap = np.where(is_video, rng.normal(np.where(about_change, 0.05, 0.0), 0.04, n), 0.0)
    reply = np.where(
        about_change,
        rng.choice([1.0, 0.5, 0.0], n, p=[0.7, 0.1, 0.2]),
        rng.choice([1.0, 0.5, 0.0], n, p=[0.2, 0.1, 0.7]),
    )
    prompted_col = np.where(is_video, reply, 0.0)
    return {
        "temporal_loss_gap": gap,
        "temporal_prompted": pa.array(prompted_col, mask=np.full(n, not prompted)),
    }


MODEL_ERRORS = (
    "too_long: 9214 tokens > max_length 8192",
    "media_error: cannot decode video",
    "placeholder_mismatch: 2 <image> placeholders for 1 image",
)
MODEL_COLUMNS = (
    "loss",
    "loss_blind",
    "vds",
    "ppl",
    "temporal_loss_gap",
    "stability",
    "pism_lambda",
    "pism_label",
    "cmab_ratio",
    "cmab_label",
)


def _with_model_errors(table: pa.Table, rng: np.random.Generator, rate: float) -> pa.Table:
    """`model_error` on a `rate` share of rows, their model descriptors null, as the score
    stage writes them (operators/model_descriptors.py)."""
    n = table.num_rows
    failed = rng.random(n) < rate
    reason = pc.take(pa.array(MODEL_ERRORS), pa.array(rng.integers(0, len(MODEL_ERRORS), n)))
    for name in MODEL_COLUMNS:
        i = table.column_names.index(name)
        col = table.column(name).combine_chunks()
        table = table.set_column(i, name, pc.if_else(pa.array(failed), pa.nulls(n, col.type), col))
    return table.append_column(
        "model_error", pc.if_else(pa.array(failed), reason, pa.nulls(n, pa.string()))
    )


def descriptor_table(
    n: int,
    seed: int = 0,
    dup_rate: float = 0.03,
    prompted_temporal: bool = False,
    error_rate: float = 0.01,
) -> pa.Table:
    """N pool rows with every descriptor column; deterministic in (n, seed)."""
    rng = np.random.default_rng(seed)
    src = rng.choice(len(SOURCES), size=n, p=SOURCE_P)
    media = np.where(src == 10, 2, np.where(src >= 6, 1, 0))  # 0 image, 1 video, 2 text
    is_video = media == 1
    # Several QAs per video: consecutive video rows share a video id (1-12 QAs each).
    vid_group = np.cumsum(rng.random(n) < 1 / 5)
    obj = rng.integers(0, max(n // 2, 10), size=n)
    qpick, apick = rng.integers(0, len(QUESTIONS), n), rng.integers(0, len(ANSWERS), n)
    # Exact duplicates: a few rows copy an earlier row's text and media.
    dup = (rng.random(n) < dup_rate) & (np.arange(n) > 0)
    dup_of = np.where(dup, rng.integers(0, np.maximum(np.arange(n), 1)), np.arange(n))
    qpick, apick, obj = qpick[dup_of], apick[dup_of], obj[dup_of]
    question, answer = _fmt(QUESTIONS, qpick, obj), _fmt(ANSWERS, apick, obj)
    num_frames = np.where(is_video, rng.choice([8, 16, 32, 64], size=n), 1)
    loss = rng.gamma(2.0, 0.6, n)
    loss_blind = loss + rng.normal(0.3, 0.5, n) * np.where(media == 2, 0.05, 1.0)
    motion = np.where(is_video, rng.gamma(2.0, 1.5, n), 0.0)
    category = np.where(is_video, rng.choice([3, 4], n), rng.choice(3, n))
    temporal = _temporal_columns(rng, is_video, category == 3, prompted_temporal)
    stability = rng.beta(4, 2, n)
    pism_lambda = rng.choice(np.round(np.arange(0, 1.01, 0.1), 1), size=n)
    cmab_ratio = rng.gamma(2.0, 0.5, n)
    cols = {
        "id": pc.binary_join_element_wise("s", pc.cast(pa.array(np.arange(n)), pa.string()), ""),
        "source": pc.take(pa.array(SOURCES), pa.array(src)),
        "media_type": pc.take(pa.array(["image", "video", "text"]), pa.array(media)),
        "video_id": pc.if_else(
            pa.array(is_video),
            pc.binary_join_element_wise("v", pc.cast(pa.array(vid_group), pa.string()), ""),
            pa.nulls(n, pa.string()),
        ),
        "messages": _messages(question, answer, media),
        "category": pc.take(
            pa.array(CATEGORIES),
            pa.array(category),
        ),
        "answer": answer,
        "motion": motion,
        "frame_div": np.where(is_video, rng.beta(2, 8, n), 0.0),
        "num_frames": num_frames.astype(np.int64),
        "duration": np.where(is_video, num_frames / 2.0, 0.0),
        "loss": loss,
        "loss_blind": loss_blind,
        "vds": loss_blind - loss,
        "ppl": np.exp(np.clip(loss, -30, 30)),
        **temporal,
        "stability": pa.array(stability, mask=rng.random(n) < 0.1),
        "cluster": rng.integers(0, 64, n),
        "cluster_dist": rng.gamma(2.0, 0.4, n),
        "pism_lambda": pism_lambda,
        "cmab_ratio": cmab_ratio,
        "ost_utility": rng.normal(0.0, 1.0, n),
        "styles": _styles(rng, n),
        "dup_cluster": dup_of.astype(np.int64),
        "dup_keep": ~dup,
    }
    for i, cap in enumerate(CAPABILITIES):
        base = rng.integers(0, 6, n)
        cols[f"cap_{cap}"] = np.where(rng.random(n) < 0.3 + 0.03 * i, 0, base).astype(np.int8)
    from selection.baselines import cmab_levels, pism_levels

    cols["pism_label"] = pa.array(pism_levels(pism_lambda).tolist(), pa.string())
    cols["cmab_label"] = pa.array(cmab_levels(cmab_ratio).tolist(), pa.string())
    table = _with_model_errors(pa.table(cols), rng, error_rate)
    sizes = np.bincount(table.column("cluster").to_numpy(), minlength=64)
    return table.append_column("cluster_size", pa.array(sizes[table.column("cluster").to_numpy()]))

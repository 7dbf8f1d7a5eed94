"""Rows of our schema -> model inputs of any Hugging Face image-text-to-text processor.

Shared by the model-based descriptors and by training (SFT / GRPO). A row's `messages` carry
`<image>` / `<video>` placeholders in the user text and `media` holds absolute paths in the
same order. `encode_row` renders the conversation with the processor's chat template, lets the
processor expand the media placeholders (Qwen2-VL-style video input where the processor has a
video processor, the frames as images otherwise), and appends the answer's tokens so that
labels cover the assistant answer only (through the end-of-turn token, which the model must
learn to emit). `collate` pads a list of encodings into one batch (right padding for loss and
training, left padding for generation) and concatenates the media tensors along dim 0, which
is how the processors themselves batch them.

The prompt is tokenized through the processor (vision tokens expanded) and the answer with
the tokenizer alone, so the answer start is known exactly (ARCHITECTURE.md section 5).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from operators.formats.records import RowError
from operators.media import load_image, read_video_frames
from operators.row_errors import describe, is_row_error

__all__ = [
    "IGNORE_INDEX",
    "Batch",
    "InputsConfig",
    "RowEncoding",
    "RowError",
    "batch_rows",
    "collate",
    "decode_media",
    "encode_row",
    "encode_rows",
    "frame_order",
    "split_turns",
    "vision_token_ids",
]

IGNORE_INDEX = -100
PLACEHOLDER = re.compile(r"(<image>|<video>)")
# Token-aligned processor outputs other than input_ids, and their value on appended tokens.
TOKEN_FIELDS = {"attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": 0}


@dataclass(frozen=True)
class InputsConfig:
    """How rows become model inputs."""

    num_frames: int = 8  # frames sampled uniformly from each video
    video_as_frames: bool | None = None  # None: frames as images iff the processor has no video
    max_tokens: int = 4096  # a row longer than this (prompt + answer) is refused as too_long


@dataclass
class RowEncoding:
    """One row's prompt (processor output) and answer token ids, unpadded."""

    prompt_ids: list[int]
    answer_ids: list[int]
    token_fields: dict[str, list[int]]  # aligned with prompt_ids
    media: dict  # non-token processor outputs (pixel_values, image_grid_thw, ...)

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.answer_ids)


@dataclass
class Batch:
    """Padded model inputs. labels: (B, L) with IGNORE_INDEX outside the answers."""

    inputs: dict  # kwargs for model(**inputs) / model.generate(**inputs)
    labels: object  # torch.LongTensor (B, L)
    vision_mask: object  # torch.BoolTensor (B, L): positions of image / video tokens
    prompt_lengths: list[int]


def batch_rows(batch: dict) -> list[dict]:
    """A Ray Data numpy batch (column -> array) as a list of plain row dicts."""
    names = list(batch)
    size = len(batch[names[0]]) if names else 0
    rows = []
    for i in range(size):
        row = {}
        for name in names:
            value = batch[name][i]
            if isinstance(value, np.ndarray):
                value = value.tolist()
            row[name] = value.item() if isinstance(value, np.generic) else value
        rows.append(row)
    return rows


def split_turns(row: dict) -> tuple[list[dict], str]:
    """(the prompt turns, the answer): the last assistant turn, else the row's `answer`."""
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in row["messages"]]
    if messages and messages[-1]["role"] == "assistant":
        return messages[:-1], messages[-1]["content"]
    if row.get("answer"):
        return messages, str(row["answer"])
    raise RowError("no_answer", "row has no assistant turn and no answer")


def frame_order(count: int, key: str, mode: str = "ordered") -> list[int]:
    """Frame indices for a variant: ordered, shuffled (seeded by key, never the identity),
    reversed, or the middle frame only ("single")."""
    if mode == "ordered" or count < 2 and mode != "single":
        return list(range(count))
    if mode == "reversed":
        return list(range(count))[::-1]
    if mode == "single":
        return [count // 2]
    if mode != "shuffled":
        raise ValueError(f"unknown frame order {mode!r}")
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    order = rng.permutation(count)
    if (order == np.arange(count)).all():
        order = np.roll(order, 1)
    return [int(k) for k in order]


def decode_media(row: dict, num_frames: int) -> list[np.ndarray]:
    """Decode the row's media in order: (H, W, 3) per image, (T, H, W, 3) per video."""
    out, paths = [], row.get("media")
    for path in [] if paths is None else list(paths):
        if row["media_type"] == "video":
            out.append(read_video_frames(str(path), num_frames)[0])
        else:
            image = load_image(str(path))
            out.append(image if image.flags.writeable else image.copy())
    return out


def _content(text: str) -> list[dict]:
    """Split text at the media placeholders into typed parts."""
    parts = []
    for piece in PLACEHOLDER.split(text):
        if piece in ("<image>", "<video>"):
            parts.append({"type": piece[1:-1]})
        elif piece.strip():
            parts.append({"type": "text", "text": piece.strip("\n")})
    return parts


def _conversation(turns: list[dict], media: list[np.ndarray] | None, video_as_frames: bool):
    """HF structured conversation and the flat image / video lists in placeholder order.

    media None means blind: placeholders are removed and no media is passed. Media without a
    placeholder go in front of the first user turn (the LLaVA convention).
    """
    if media is None:
        return (
            [_text_turn(t["role"], PLACEHOLDER.sub("", t["content"]).strip()) for t in turns],
            [],
            [],
        )
    conv, count = [], 0
    for turn in turns:
        parts = _content(turn["content"])
        count += sum(p["type"] != "text" for p in parts)
        conv.append({"role": turn["role"], "content": parts})
    if count > len(media):
        raise RowError("placeholder_mismatch", f"{count} placeholders, {len(media)} media")
    first_user = next((c for c in conv if c["role"] == "user"), None)
    if first_user is None:
        raise RowError("malformed", "no user turn")
    missing = ["video" if m.ndim == 4 else "image" for m in media[count:]]
    first_user["content"] = [{"type": k} for k in missing] + first_user["content"]
    images, videos = _media_lists(conv, media, video_as_frames)
    return conv, images, videos


def _text_turn(role: str, text: str) -> dict:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _picture(array: np.ndarray):
    """An (H, W, 3) uint8 array as a PIL image: processors guess the channel axis of arrays
    and read a 1x1 or 4x4 RGB picture as channels-first; a PIL image has no such ambiguity."""
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="RGB")


def _media_lists(conv: list[dict], media: list[np.ndarray], video_as_frames: bool):
    """Walk the parts in order, pairing each with its media; video frames become images
    (one image part per frame) when the processor has no video input."""
    images, videos, k = [], [], 0
    for turn in conv:
        parts = []
        for part in turn["content"]:
            if part["type"] == "text":
                parts.append(part)
                continue
            array = media[k]
            k += 1
            if array.ndim == 3:
                images.append(_picture(array))
                parts.append({"type": "image"})
            elif video_as_frames:
                images.extend(_picture(frame) for frame in array)
                parts.extend({"type": "image"} for _ in range(len(array)))
            else:
                videos.append(array)
                parts.append({"type": "video"})
        turn["content"] = parts
    return images, videos


def vision_token_ids(processor) -> set[int]:
    """Ids of the image / video placeholder tokens that the processor expands."""
    ids = set()
    for name in ("image_token_id", "video_token_id"):
        value = getattr(processor, name, None)
        if isinstance(value, int):
            ids.add(value)
    return ids


def _render(processor, row: dict, media, config: InputsConfig, answer: str | None):
    """(prompt text, answer token ids, images, videos) of one row."""
    turns, reference = split_turns(row)
    answer = reference if answer is None else answer
    as_frames = config.video_as_frames
    if as_frames is None:
        as_frames = getattr(processor, "video_processor", None) is None
    conv, images, videos = _conversation(turns, media, as_frames)
    prompt = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    answer_ids: list[int] = []
    if answer:
        full = processor.apply_chat_template(
            conv + [_text_turn("assistant", answer)], tokenize=False
        )
        if not full.startswith(prompt):
            raise RowError("template", "chat template output does not extend the prompt")
        suffix, eos = full[len(prompt) :], processor.tokenizer.eos_token
        suffix = (
            suffix[: suffix.index(eos) + len(eos)] if eos and eos in suffix else suffix.rstrip()
        )
        answer_ids = processor.tokenizer(suffix, add_special_tokens=False)["input_ids"]
    return prompt, answer_ids, images, videos


def _encoding(out: dict, k: int, keep, answer_ids: list[int], media: dict, limit: int):
    """Row k of a processor output (its non-pad positions `keep`) as a RowEncoding."""
    prompt_ids = out["input_ids"][k][keep].tolist()
    if len(prompt_ids) + len(answer_ids) > limit:
        raise RowError("too_long", f"{len(prompt_ids) + len(answer_ids)} tokens")
    fields = {f: out[f][k][keep].tolist() for f in TOKEN_FIELDS if f in out}
    return RowEncoding(prompt_ids, answer_ids, fields, media)


def encode_row(
    processor,
    row: dict,
    media: list[np.ndarray] | None,
    config: InputsConfig = InputsConfig(),
    answer: str | None = None,
) -> RowEncoding:
    """Encode one row: prompt through the processor (media expanded), answer tokens after it.

    media: decoded arrays in the row's order, or None for the blind variant (placeholders
    removed). answer: replaces the row's answer (e.g. a generated one), "" for prompt only.
    """
    prompt, answer_ids, images, videos = _render(processor, row, media, config, answer)
    out = processor(
        text=[prompt], images=images or None, videos=videos or None, return_tensors="pt"
    )
    media_out = {k: v for k, v in out.items() if k != "input_ids" and k not in TOKEN_FIELDS}
    keep = slice(None)
    return _encoding(out, 0, keep, answer_ids, media_out, config.max_tokens)


# Flattened media outputs and the grid that says how many rows of them each item has.
GRIDS = {"pixel_values": "image_grid_thw", "pixel_values_videos": "video_grid_thw"}


def _split_media(out: dict, images: list[int], videos: list[int]) -> list[dict] | None:
    """Cut batch-level media tensors into per-row dicts, or None when the layout is unknown.

    images / videos: how many of each every row passed. A tensor is cut by its grid (rows of
    patches per item) when it has one, else by item counts when its first dim matches.
    """
    import torch

    per_row: list[dict] = [{} for _ in images]
    for key, value in out.items():
        if key == "input_ids" or key in TOKEN_FIELDS:
            continue
        value = torch.as_tensor(np.asarray(value)) if not torch.is_tensor(value) else value
        grid = GRIDS.get(key)
        if grid in out:
            counts = images if grid == "image_grid_thw" else videos
            items = out[grid].prod(dim=1).tolist()
            edges = np.cumsum([0, *counts])
            sizes = [int(sum(items[edges[r] : edges[r + 1]])) for r in range(len(counts))]
        elif value.shape[0] == sum(images) and sum(images) != sum(videos):
            sizes = images
        elif value.shape[0] == sum(videos) and sum(images) != sum(videos):
            sizes = videos
        else:
            return None
        for r, part in enumerate(torch.split(value, sizes)):
            if sizes[r]:
                per_row[r][key] = part
    return per_row


def encode_rows(
    processor,
    rows: list[dict],
    media: list[list[np.ndarray] | None],
    config: InputsConfig = InputsConfig(),
    answers: list[str | None] | None = None,
) -> list[RowEncoding | RowError]:
    """`encode_row` for many rows with one processor call (the per-call overhead dominates
    on small media); a row that fails comes back as its RowError, in place."""
    answers = answers or [None] * len(rows)
    results: list = [None] * len(rows)
    ready = []
    for i, row in enumerate(rows):
        try:
            ready.append((i, *_render(processor, row, media[i], config, answers[i])))
        except RowError as error:
            results[i] = error
    if not ready:
        return results
    # Images nested per prompt: Idefics3 / SmolVLM and Gemma 3 count them per sample.
    images = [list(imgs) for _, _, _, imgs, _ in ready]
    videos = [v for _, _, _, _, vids in ready for v in vids]
    try:
        out = processor(
            text=[r[1] for r in ready],
            images=images if any(images) else None,
            videos=videos or None,
            return_tensors="pt",
            padding=True,
        )
        split = _split_media(out, [len(r[3]) for r in ready], [len(r[4]) for r in ready])
    except Exception as error:  # one row the processor refuses (e.g. aspect > 200): retry per row
        if not is_row_error(error):
            raise
        split = None
    if split is None:  # unknown media layout, or a batch call that raised: one call per row
        return [
            _encode_or_error(processor, rows[i], media[i], config, answers[i])
            for i in range(len(rows))
        ]
    for k, (i, _, answer_ids, _, _) in enumerate(ready):
        keep = out["attention_mask"][k].bool()
        try:
            results[i] = _encoding(out, k, keep, answer_ids, split[k], config.max_tokens)
        except RowError as error:
            results[i] = error
    return results


def _encode_or_error(processor, row, media, config, answer):
    """`encode_row`, or the RowError that names why this one row cannot be encoded."""
    try:
        return encode_row(processor, row, media, config, answer)
    except RowError as error:
        return error
    except Exception as error:
        if not is_row_error(error):
            raise
        return RowError("processor_error", describe(error))


def _vision_mask(encoding: RowEncoding, vision_ids: set[int]) -> list[bool]:
    """Positions of media tokens: by the processor's token types where it gives them
    (`mm_token_type_ids`; Gemma 3's `token_type_ids` mark its image soft tokens), else by id."""
    fields = encoding.token_fields
    types = fields.get("mm_token_type_ids", fields.get("token_type_ids"))
    if types is not None:
        return [t != 0 for t in types] + [False] * len(encoding.answer_ids)
    return [t in vision_ids for t in encoding.prompt_ids] + [False] * len(encoding.answer_ids)


def _cat_media(encodings: list[RowEncoding]) -> dict:
    import torch

    keys = {k for e in encodings for k in e.media}
    out = {}
    for key in sorted(keys):
        parts = [torch.as_tensor(e.media[key]) for e in encodings if key in e.media]
        out[key] = torch.cat(_zero_padded(parts), dim=0)
    return out


def _zero_padded(parts: list) -> list:
    """Per-sample media tensors padded with zeros to a common shape past dim 0: processors
    that batch images per sample (Idefics3 / SmolVLM: (1, images, C, H, W) and a pixel mask)
    pad the same way, and the model drops all-zero padding images."""

    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) == 1 or len({p.ndim for p in parts}) != 1:
        return parts
    target = [max(p.shape[d] for p in parts) for d in range(1, parts[0].ndim)]
    out = []
    for p in parts:
        grown = p.new_zeros((p.shape[0], *target))
        grown[tuple(slice(0, n) for n in p.shape)] = p
        out.append(grown)
    return out


def _padder(pad: int, side: str):
    def padded(seq: list, fill) -> list:
        return [fill] * pad + seq if side == "left" else seq + [fill] * pad

    return padded


def collate(encodings: list[RowEncoding], processor, padding_side: str = "right") -> Batch:
    """Pad encodings into one batch; labels are the answer tokens, IGNORE_INDEX elsewhere."""
    import torch

    pad_id = processor.tokenizer.pad_token_id or 0
    vision_ids = vision_token_ids(processor)
    width = max(len(e) for e in encodings)
    ids, labels, vision = [], [], []
    fields = {k: [] for k in TOKEN_FIELDS if k in encodings[0].token_fields}
    for e in encodings:
        pad = width - len(e)
        padded = _padder(pad, padding_side)

        ids.append(padded(e.prompt_ids + e.answer_ids, pad_id))
        labels.append(padded([IGNORE_INDEX] * len(e.prompt_ids) + e.answer_ids, IGNORE_INDEX))
        vision.append(padded(_vision_mask(e, vision_ids), False))
        for key, column in fields.items():
            value = e.token_fields[key] + [TOKEN_FIELDS[key]] * len(e.answer_ids)
            column.append(padded(value, 0))
    inputs = {"input_ids": torch.tensor(ids, dtype=torch.long)}
    inputs.update({k: torch.tensor(v, dtype=torch.long) for k, v in fields.items()})
    inputs.update(_cat_media(encodings))
    return Batch(
        inputs,
        torch.tensor(labels, dtype=torch.long),
        torch.tensor(vision, dtype=torch.bool),
        [len(e.prompt_ids) for e in encodings],
    )

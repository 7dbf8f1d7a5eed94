"""GDO's generation-heavy descriptors on vLLM engines, through `ray.data.llm` (GPU clusters).

The same two descriptors as the HF backend of operators/model_descriptors.py, with the same
definitions (GDO, Wu & Zhao 2026):
- `stability`: `samples` sampled answers (temperature 0.8, top_p 0.9, 32 new tokens) per row,
  mean pairwise word-set Jaccard (operators.vlm_scoring.word_jaccard);
- `temporal_prompted`: the proxy's reply to the Temporal / Static prompt about a video's
  question -> 1 / 0 / 0.5 (operators.model_descriptors.prompted_temporal_value); 0 for
  images and text.

Sampling many answers per row is where a GPU spends most of the descriptor time; vLLM batches
them across rows with paged attention. `ray.data.llm` returns one completion per request, so
each row becomes `samples` requests (+ one temporal request for a video), each with its own
seed, and the answers are grouped back by row.

`generation_descriptors(ds, config)` is a Dataset -> Dataset transform with one output row per
input row, one linear pipeline (a branch would run the upstream steps twice). Every row
travels inside its requests as a one-row Arrow IPC blob (no pickling) and comes back with
`stability` and `temporal_prompted` set. A row that failed an earlier step (`score_error`
set) or whose prompt cannot be built (no answer, unreadable media) sends one 1-token
placeholder request instead and comes back unchanged, or with NaN descriptors and the reason
in `model_error`; a row whose requests all failed in the engine gets NaN and the engine's
error there. Media go to vLLM as data URLs of the files' bytes (images and MP4
videos; vLLM samples `num_frames` frames), read through operators.storage so object-store
pools work.
"""

from __future__ import annotations

import base64
import itertools
import mimetypes
import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from operators import storage
from operators.model_descriptors import TEMPORAL_PROMPT, prompted_temporal_value
from operators.vlm_inputs import PLACEHOLDER, RowError, split_turns
from operators.vlm_scoring import word_jaccard

__all__ = [
    "VllmConfig",
    "chat_messages",
    "descriptors_from_replies",
    "generation_descriptors",
    "processor_config",
    "requests_for_row",
]

ROW_BLOB, ROW_KEY, REQUEST = "_row_blob", "_row_key", "_request"
SKIP = "skip:"  # REQUEST prefix of a placeholder request; the rest is the reason ("" = failed)


@dataclass(frozen=True)
class VllmConfig:
    """The vLLM engines for generation (help on each field)."""

    model: str = (
        ""  # directory of the proxy (HF format) on every GPU node; "" in a recipe: RUN/proxy
    )
    samples: int = 5  # stability: sampled answers per row
    temperature: float = 0.8
    top_p: float = 0.9
    max_tokens: int = 32  # new tokens per sampled answer
    prompted_temporal: bool = True  # also ask the Temporal / Static prompt for videos
    num_frames: int = 8  # frames vLLM samples from each video
    concurrency: tuple[int, int] = (1, 1)  # (min, max) engine replicas (autoscaling)
    batch_size: int = 64  # requests per engine batch
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 4096
    dtype: str = "auto"  # bf16 where the GPU supports it
    accelerator_type: str | None = None  # e.g. "H100"; None: any GPU
    trust_remote_code: bool = False  # off unless the user turns it on
    seed: int = 0
    engine_kwargs: dict = field(default_factory=dict)  # more vLLM engine arguments


def _media_part(path: str, media_type: str) -> dict:
    """An OpenAI-style content part holding the media file as a data URL."""
    mime = mimetypes.guess_type(path)[0] or ("video/mp4" if media_type == "video" else "image/png")
    url = f"data:{mime};base64,{base64.b64encode(storage.read_bytes(path)).decode('ascii')}"
    kind = "video_url" if media_type == "video" else "image_url"
    return {"type": kind, kind: {"url": url}}


def chat_messages(row: dict) -> list[dict]:
    """The row's prompt turns (answer removed) in OpenAI chat format, media parts where the
    `<image>` / `<video>` placeholders stand (media without a placeholder go first)."""
    turns, _ = split_turns(row)
    media = list(row.get("media") or [])
    placeholders = sum(len(PLACEHOLDER.findall(t["content"])) for t in turns if t["role"] == "user")
    leading = [
        _media_part(p, row["media_type"]) for p in media[: max(0, len(media) - placeholders)]
    ]
    remaining = iter(media[len(leading) :])
    messages = []
    for turn in turns:
        if turn["role"] != "user":
            messages.append({"role": turn["role"], "content": turn["content"]})
            continue
        parts = leading if not messages else []
        for piece in PLACEHOLDER.split(turn["content"]):
            if piece in ("<image>", "<video>"):
                path = next(remaining, None)
                if path is not None:
                    parts.append(_media_part(path, row["media_type"]))
            elif piece.strip():
                parts.append({"type": "text", "text": piece.strip()})
        messages.append({"role": "user", "content": parts})
    return messages


def _seed(config: VllmConfig, key: str, k: int) -> int:
    return (zlib.crc32(f"{key}:{k}".encode()) + config.seed) % (2**31)


def requests_for_row(row: dict, key: str, blob: bytes, config: VllmConfig) -> list[dict]:
    """The engine requests of one row: `samples` stability samples, + the temporal prompt for a
    video. Each carries the row (blob) and its key so the replies can be grouped back."""
    messages = chat_messages(row)
    common = {ROW_KEY: key, ROW_BLOB: blob}
    requests = [
        {
            **common,
            REQUEST: f"stability:{k}",
            "messages": messages,
            "sampling_params": {
                "temperature": config.temperature,
                "top_p": config.top_p,
                "max_tokens": config.max_tokens,
                "seed": _seed(config, key, k),
            },
        }
        for k in range(config.samples)
    ]
    if config.prompted_temporal and row.get("media_type") == "video":
        turns, _ = split_turns(row)
        question = " ".join(t["content"] for t in turns if t["role"] == "user")
        text = TEMPORAL_PROMPT.format(question=PLACEHOLDER.sub("", question).strip())
        requests.append(
            {
                **common,
                REQUEST: "temporal",
                "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
                "sampling_params": _greedy(4, config),
            }
        )
    return requests


def _greedy(max_tokens: int, config: VllmConfig) -> dict:
    # Every request carries the same keys: Arrow unifies them into one struct column.
    return {"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens, "seed": config.seed}


def _placeholder(key: str, blob: bytes, reason: str, config: VllmConfig) -> dict:
    """The one request of a row that gets no descriptors from the engine."""
    return {
        ROW_KEY: key,
        ROW_BLOB: blob,
        REQUEST: SKIP + reason,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "."}]}],
        "sampling_params": _greedy(1, config),
    }


def descriptors_from_replies(replies: list[dict], is_video: bool) -> dict:
    """{stability, temporal_prompted, error} from one row's replies ({_request, text, error})."""
    samples = [r["text"] for r in replies if r[REQUEST].startswith("stability") and not r["error"]]
    pairs = list(itertools.combinations(samples, 2))
    stability = float(np.mean([word_jaccard(a, b) for a, b in pairs])) if pairs else float("nan")
    temporal = 0.0
    for reply in replies:
        if reply[REQUEST] == "temporal":
            temporal = float("nan") if reply["error"] else prompted_temporal_value(reply["text"])
    if not is_video:
        temporal = 0.0
    errors = sorted({r["error"] for r in replies if r["error"]})
    return {"stability": stability, "temporal_prompted": temporal, "error": "; ".join(errors)}


def processor_config(config: VllmConfig):
    """The `vLLMEngineProcessorConfig` of the engines (chat template, tokenizer, multimodal
    preparation and detokenizer stages on CPU; the engine on GPU)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    if not config.model:
        raise ValueError("VllmConfig.model: no model directory given")
    model_kwargs = {"model": config.model, "trust_remote_code": config.trust_remote_code}
    engine = {
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_model_len": config.max_model_len,
        "dtype": config.dtype,
        "trust_remote_code": config.trust_remote_code,
        "limit_mm_per_prompt": {"image": 1, "video": 1},
        "media_io_kwargs": {"video": {"num_frames": config.num_frames}},
        **config.engine_kwargs,
    }
    return vLLMEngineProcessorConfig(
        model_source=config.model,
        engine_kwargs=engine,
        concurrency=tuple(config.concurrency),
        batch_size=config.batch_size,
        accelerator_type=config.accelerator_type,
        should_continue_on_error=True,
        prepare_multimodal_stage={"enabled": True, "model_config_kwargs": model_kwargs},
    )


def _row_key(row: dict) -> str:
    if row.get("_shard") is not None and row.get("_pos") is not None:
        return f"{row['_shard']}:{row['_pos']}"
    return str(row["id"])


def _expand(batch: pa.Table, config: VllmConfig) -> pa.Table:
    """Rows -> engine requests; a failed or unanswerable row -> one placeholder request."""
    requests = []
    for k, row in enumerate(batch.to_pylist()):
        key, blob = _row_key(row), _ipc(batch.slice(k, 1))
        if row.get("score_error") is not None:
            requests.append(_placeholder(key, blob, "", config))
            continue
        try:
            requests.extend(requests_for_row(row, key, blob, config))
        except RowError as error:
            requests.append(_placeholder(key, blob, f"{error.reason}: {error}", config))
        except OSError as error:
            requests.append(_placeholder(key, blob, f"unreadable_media: {error}", config))
    return pa.Table.from_pylist(requests)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(blob: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(blob)).read_all()


def _postprocess(row: dict) -> dict:
    error = row.get("__inference_error__") or ""
    return {
        ROW_KEY: row[ROW_KEY],
        ROW_BLOB: row[ROW_BLOB],
        REQUEST: row[REQUEST],
        "text": row.get("generated_text") or "",
        "error": str(error),
    }


def _with_descriptors(row_table: pa.Table, values: dict) -> pa.Table:
    """The original row with stability / temporal_prompted (and model_error) replaced."""
    for name in ("stability", "temporal_prompted"):
        column = pa.array([values[name]], pa.float64(), mask=np.isnan([values[name]]))
        if name in row_table.column_names:
            row_table = row_table.drop_columns([name])
        row_table = row_table.append_column(name, column)
    if values["error"]:
        previous = None
        if "model_error" in row_table.column_names:
            previous = row_table.column("model_error")[0].as_py()
            row_table = row_table.drop_columns(["model_error"])
        message = "; ".join(m for m in (previous, f"vllm: {values['error']}") if m)
        row_table = row_table.append_column("model_error", pa.array([message], pa.string()))
    return row_table


def _collect(group: pa.Table) -> pa.Table:
    """One row's replies -> that row, with its descriptors."""
    replies = group.to_pylist()
    row = _from_ipc(replies[0][ROW_BLOB])
    request = replies[0][REQUEST]
    if request == SKIP:  # failed in an earlier step: untouched
        return row
    if request.startswith(SKIP):
        nan = float("nan")
        values = {"stability": nan, "temporal_prompted": nan, "error": request[len(SKIP) :]}
        return _with_descriptors(row, values)
    is_video = row.column("media_type")[0].as_py() == "video"
    return _with_descriptors(row, descriptors_from_replies(replies, is_video))


def generation_descriptors(ds, config: VllmConfig):
    """Dataset -> Dataset: stability and temporal_prompted from vLLM, one row out per row in."""
    from ray.data.llm import build_processor

    requests = ds.map_batches(_expand, fn_kwargs={"config": config}, batch_format="pyarrow")
    processor = build_processor(processor_config(config), postprocess=_postprocess)
    replies = processor(requests)
    return replies.groupby(ROW_KEY).map_groups(_collect, batch_format="pyarrow")

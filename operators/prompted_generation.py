"""Greedy replies of the VLM runtime to mmSSR's scorer / styler prompts, with the sample's media.

mmSSR (Lyu et al., arXiv 2503.13383; lyumengyao/mmssr) rates each VQA instance with a
multimodal model that sees the image and the conversation. The prompted scorer and styler
(operators/capabilities.py, operators/styles.py) build the paper's prompts and call a batched
`generate(prompts) -> replies`; `VLMGenerate` is that generator on the HF VLM runtime
(operators/vlm_runtime.py). A prompt is a string (text only) or a prompt row: a pool row whose
`messages` is the one user turn holding the prompt, its `<image>` / `<video>` placeholders
bound to the row's decoded `media`. A prompt whose media cannot be decoded or which the
processor refuses (too long, placeholder mismatch) gets `None`, which the parsers count as an
unparsable reply ("empty").

`VLMGenerate(config)` is picklable; calling it (once per Ray actor) loads the model and returns
the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

from operators.formats.records import RowError
from operators.media import MediaError
from operators.vlm_inputs import decode_media, encode_rows
from operators.vlm_runtime import RuntimeConfig, VLMRuntime

__all__ = ["PromptGenerationConfig", "VLMGenerate", "prompt_row", "with_media"]


@dataclass(frozen=True)
class PromptGenerationConfig:
    """Which model answers the prompts, and how long a reply may be."""

    runtime: RuntimeConfig
    max_new_tokens: int = 24  # a score ("4", "Score: 4/5") or a few style names


def prompt_row(row: dict, prompt: str) -> dict:
    """The row with its conversation replaced by one user turn holding `prompt` (the row's
    media placeholders stay in the prompt text, so the media binds to them)."""
    return {
        "id": row.get("id"),
        "media": row.get("media"),
        "media_type": row.get("media_type"),
        "messages": [{"role": "user", "content": prompt}],
        "answer": "-",  # encode_rows needs a reference answer; generation ignores it
    }


def with_media(table, prompts: list[str], per_row: int = 1) -> list[dict]:
    """Prompt rows for `prompts`, `per_row` consecutive prompts per row of `table`."""
    names = [c for c in ("id", "media", "media_type") if c in table.column_names]
    rows = table.select(names).to_pylist()
    return [prompt_row(rows[k // per_row], p) for k, p in enumerate(prompts)]


class VLMGenerate:
    """Picklable factory: `VLMGenerate(config)()` -> `generate(prompts) -> replies`."""

    def __init__(self, config: PromptGenerationConfig):
        self.config = config

    def __call__(self):
        runtime = VLMRuntime(self.config.runtime)
        max_new_tokens = self.config.max_new_tokens

        def generate(prompts: list) -> list[str | None]:
            rows = [p if isinstance(p, dict) else prompt_row({}, p) for p in prompts]
            return _replies(runtime, rows, max_new_tokens)

        return generate


def _replies(runtime: VLMRuntime, rows: list[dict], max_new_tokens: int) -> list[str | None]:
    replies: list[str | None] = [None] * len(rows)
    media: list = [None] * len(rows)
    decoded = []
    for i, row in enumerate(rows):
        try:
            media[i] = decode_media(row, runtime.config.inputs.num_frames)
            decoded.append(i)
        except MediaError:
            continue
    inputs = runtime.config.inputs
    encoded = encode_rows(
        runtime.processor, [rows[i] for i in decoded], [media[i] for i in decoded], inputs
    )
    ready = [(i, e) for i, e in zip(decoded, encoded, strict=True) if not isinstance(e, RowError)]
    if not ready:
        return replies
    sequences = runtime.generate([e for _, e in ready], max_new_tokens=max_new_tokens)
    for (i, _), ids in zip(ready, sequences, strict=True):
        replies[i] = runtime.decode(ids[0])
    return replies

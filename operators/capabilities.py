"""Capability scores (mmSSR's 14 capabilities, 0-5 each): prompted, embedding-based, imported.

mmSSR (Lyu et al., "Cream of the Crop", arXiv 2503.13383) rates how much each VQA instance
helps a multimodal model learn each of 14 capabilities, asking a fine-tuned scorer "On a scale
of 0 to 5, how do you rate the helpfulness of the VQA instance in training a Multimodal Large
Language Model for {capability}?". Columns `cap_<name>` (float32, null when unknown).

Three sources, one column layout:
- `PromptedCapabilityScorer`: mmSSR's question through any batched `generate(prompts) ->
  texts` (the VLM runtime, vLLM); `parse_score` reads "4", "Score: 3/5", "**4**", "8/10";
  a reply without a usable number is null and its reason is counted (and kept per row in
  `capability_errors`).
- `EmbeddingCapabilityScorer` (the offline default; no instruction-tuned model needed): an
  APPROXIMATION. The cosine of the sample's text embedding to a prototype of each capability
  (its short description plus three example instances), mapped linearly to 0-5 so that the
  capability's own examples score 5 on average and the other capabilities' examples 0
  (clipped). It ranks samples by topical relevance to a capability; it does not judge how
  helpful a sample is, as mmSSR's trained scorers do.
- `ImportedCapabilityScores`: scores the user brings (mmSSR's released scorers, an API), as
  JSONL or Parquet rows of `id` plus per-capability scores.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from operators.batches import (
    as_table,
    like_input,
    map_actor_pool,
    messages_column,
    sample_text,
    set_column,
)
from operators.capability_texts import CAPABILITIES, CAPABILITY_TEXTS
from operators.schema import capability_column
from operators.styles import conversation_prompt

__all__ = [
    "CAPABILITIES",
    "CAPABILITY_COLUMNS",
    "CAPABILITY_QUERY",
    "EmbeddingCapabilityScorer",
    "EmbeddingScorerConfig",
    "ImportedCapabilityScores",
    "PromptedCapabilityScorer",
    "PromptedScorerConfig",
    "capability_column",
    "load_capability_scores",
    "parse_score",
    "score_capabilities_embedding",
    "score_capabilities_imported",
    "score_capabilities_prompted",
]

CAPABILITY_QUERY = (
    "On a scale of 0 to 5, how do you rate the helpfulness of the VQA instance in training "
    "a Multimodal Large Language Model for {capability}?"
)


CAPABILITY_COLUMNS = tuple(capability_column(c) for c in CAPABILITIES)
_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NUMBER = r"-?\d+(?:\.\d+)?"
_ECHO = re.compile(r"(on )?a scale (of|from) 0 (to|-) 5|\b0\s*(-|to)\s*5\b", re.I)
_FRACTION = re.compile(rf"({_NUMBER})\s*(?:/|out of)\s*({_NUMBER})", re.I)
_KEYWORD = re.compile(rf"\b(?:score|rating|rate|rated)\b[^0-9\-]{{0,20}}({_NUMBER})", re.I)


def parse_score(text: str | None) -> tuple[float | None, str | None]:
    """(score in [0, 5], None) from a scorer's reply, or (None, reason).

    >>> parse_score("4"), parse_score("Score: 3/5"), parse_score("8/10")
    ((4.0, None), (3.0, None), (4.0, None))
    >>> parse_score("The image is nice."), parse_score("7")
    ((None, 'no_number'), (None, 'out_of_range'))
    """
    if text is None or not text.strip():
        return None, "empty"
    text = _ECHO.sub(" ", text)
    value = None
    if match := _FRACTION.search(text):
        num, den = float(match.group(1)), float(match.group(2))
        if den <= 0:
            return None, "bad_fraction"
        value = num if den == 5 else num / den * 5
    elif match := _KEYWORD.search(text):
        value = float(match.group(1))
    elif match := re.search(_NUMBER, text):
        value = float(match.group(0))
    else:
        words = [_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in _WORDS]
        if not words:
            return None, "no_number"
        value = float(words[0])
    if not 0 <= value <= 5:
        return None, "out_of_range"
    return value, None


def _score_columns(table: pa.Table, scores: np.ndarray, names: tuple[str, ...]) -> pa.Table:
    """Add one float32 column per capability; NaN becomes null."""
    for k, name in enumerate(names):
        column = scores[:, k].astype(np.float32)
        table = set_column(table, name, pa.array(column, pa.float32(), mask=np.isnan(column)))
    return table


@dataclass(frozen=True)
class PromptedScorerConfig:
    """Prompted capability scorer settings."""

    capabilities: tuple[str, ...] = CAPABILITIES  # which to ask about (one prompt each)
    batch_size: int = 64  # prompts per generate() call
    with_media: bool = False  # send prompt rows with the sample's media (a multimodal scorer)


class PromptedCapabilityScorer:
    """Operator: mmSSR's question per (row, capability) through `generate`; adds `cap_*`.

    `make_generate` is a picklable zero-argument factory returning `generate(prompts) ->
    texts`, so each Ray actor builds its model once. Nulls count their reason in `stats`
    and are listed per row in `capability_errors` (JSON {column: reason}, null when none).
    """

    def __init__(self, config: PromptedScorerConfig, make_generate: Callable[[], Callable]):
        self.config, self.generate = config, make_generate()
        self.columns = tuple(capability_column(c) for c in config.capabilities)
        self.stats: Counter = Counter()

    def _replies(self, prompts: list[str]) -> list[str]:
        replies: list[str] = []
        for start in range(0, len(prompts), self.config.batch_size):
            replies.extend(self.generate(prompts[start : start + self.config.batch_size]))
        if len(replies) != len(prompts):
            raise ValueError(f"generate returned {len(replies)} texts for {len(prompts)} prompts")
        return replies

    def __call__(self, batch: pa.Table | dict) -> pa.Table | dict:
        table = as_table(batch)
        caps = self.config.capabilities
        prompts = [
            conversation_prompt(m, CAPABILITY_QUERY.format(capability=c))
            for m in messages_column(table)
            for c in caps
        ]
        if self.config.with_media:
            from operators.prompted_generation import with_media

            prompts = with_media(table, prompts, per_row=len(caps))
        scores = np.full((table.num_rows, len(caps)), np.nan)
        errors: list[dict] = [{} for _ in range(table.num_rows)]
        for index, reply in enumerate(self._replies(prompts)):
            row, k = divmod(index, len(caps))
            value, reason = parse_score(reply)
            self.stats[reason or "parsed"] += 1
            if reason:
                errors[row][self.columns[k]] = reason
            else:
                scores[row, k] = value
        table = _score_columns(table, scores, self.columns)
        error_text = [json.dumps(e, sort_keys=True) if e else None for e in errors]
        table = set_column(table, "capability_errors", pa.array(error_text, pa.string()))
        return like_input(batch, table)


@dataclass(frozen=True)
class EmbeddingScorerConfig:
    """Offline capability scorer settings (an approximation; see the module docstring)."""

    # sentence model directory; None: the bundled all-MiniLM-L6-v2
    model_path: str | None = None
    # reuse this column when the batch has it (it must come from the same model)
    embedding_column: str = "text_embedding"
    batch_size: int = 64
    device: str | None = None


class EmbeddingCapabilityScorer:
    """Operator: `cap_*` = 5 * clip((cos(x, p_c) - base_c) / (top_c - base_c), 0, 1).

    p_c is capability c's prototype: the normalized sum of its description's embedding and
    its example instances' embeddings. top_c is the mean cosine of c's own examples to p_c,
    base_c that of the other capabilities' examples. So "as close as c's examples" maps to 5
    and "as close as unrelated tasks" to 0. An approximation of mmSSR's scorers (module doc).
    """

    def __init__(self, config: EmbeddingScorerConfig = EmbeddingScorerConfig()):
        from operators.embeddings import TextEmbedConfig, TextEmbedder

        self.config = config
        self.embedder = TextEmbedder(
            TextEmbedConfig(config.model_path, batch_size=config.batch_size, device=config.device)
        )
        self.prototypes, self.base, self.top = self._calibrate()

    def _calibrate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prototypes (14, dim) and the cosine levels of unrelated (base) and own (top) examples."""
        descriptions = self.embedder.encode([CAPABILITY_TEXTS[c][0] for c in CAPABILITIES])
        examples = [t for c in CAPABILITIES for t in CAPABILITY_TEXTS[c][1]]
        owner = np.repeat(
            np.arange(len(CAPABILITIES)), [len(CAPABILITY_TEXTS[c][1]) for c in CAPABILITIES]
        )
        vectors = self.embedder.encode(examples)
        sums = descriptions + np.stack(
            [vectors[owner == k].sum(0) for k in range(len(descriptions))]
        )
        prototypes = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        sims = vectors @ prototypes.T  # (examples, 14)
        top = np.array([sims[owner == k, k].mean() for k in range(len(CAPABILITIES))])
        base = np.array([sims[owner != k, k].mean() for k in range(len(CAPABILITIES))])
        return prototypes, base, top

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 14) calibrated scores in [0, 5] of L2-normalized text embeddings."""
        sims = vectors @ self.prototypes.T
        return 5 * np.clip((sims - self.base) / (self.top - self.base), 0, 1)

    def __call__(self, batch: pa.Table | dict) -> pa.Table | dict:
        table = as_table(batch)
        vectors = self._vectors(table)
        table = _score_columns(table, self.scores(vectors), CAPABILITY_COLUMNS)
        return like_input(batch, table)

    def _vectors(self, table: pa.Table) -> np.ndarray:
        name = self.config.embedding_column
        if name in table.column_names and table.column(name).null_count == 0:
            column = table.column(name).combine_chunks()
            vectors = np.asarray(column.values.to_numpy(zero_copy_only=False), np.float32)
            vectors = vectors.reshape(table.num_rows, -1)
            if vectors.shape[1] == self.prototypes.shape[1]:
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                return vectors / np.maximum(norms, 1e-12)
        return self.embedder.encode([sample_text(m) for m in messages_column(table)])


def _capability_key(name: str) -> str | None:
    """The column a user's capability key names ('OCR', 'cap_ocr', 'stem knowledge'), or None."""
    column = capability_column(name)
    return column if column in CAPABILITY_COLUMNS else None


def _file_rows(path: str, stats: Counter) -> list[dict]:
    """Rows of a JSONL or Parquet score file; malformed JSON lines are counted and skipped."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                stats["malformed_line"] += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                stats["malformed_line"] += 1
    return rows


def _score_value(value: Any, stats: Counter) -> float:
    """A user's score as a float in [0, 5], or NaN with the reason counted."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        stats["not_a_number"] += 1
        return np.nan
    if not 0 <= number <= 5:
        stats["out_of_range"] += 1
        return np.nan
    return number


def load_capability_scores(path: str) -> tuple[dict[str, int], np.ndarray, Counter]:
    """(id -> row index, (n, 14) scores with NaN for unknown, stats) from a user's file.

    Rows: {"id": ..., "<capability>": score, ...}, capability keys as names ("OCR",
    "stem knowledge") or columns ("cap_ocr"), optionally nested under "scores".
    """
    stats: Counter = Counter()
    index: dict[str, int] = {}
    scores: list[np.ndarray] = []
    for row in _file_rows(path, stats):
        if row.get("id") is None:
            stats["missing_id"] += 1
            continue
        values = np.full(len(CAPABILITY_COLUMNS), np.nan)
        fields = row.get("scores") if isinstance(row.get("scores"), dict) else row
        for key, value in fields.items():
            if key in ("id", "scores") or value is None:
                continue
            column = _capability_key(str(key))
            if column is None:
                stats["unknown_capability"] += 1
                continue
            values[CAPABILITY_COLUMNS.index(column)] = _score_value(value, stats)
        key = str(row["id"])
        if key in index:
            stats["duplicate_id"] += 1
            scores[index[key]] = values
        else:
            index[key] = len(scores)
            scores.append(values)
    stats["ids"] = len(index)
    matrix = np.stack(scores) if scores else np.zeros((0, len(CAPABILITY_COLUMNS)))
    return index, matrix, stats


class ImportedCapabilityScores:
    """Operator: `cap_*` looked up by `id` in a user's score file (null for absent ids)."""

    def __init__(self, path: str):
        self.index, self.matrix, self.stats = load_capability_scores(path)

    def __call__(self, batch: pa.Table | dict) -> pa.Table | dict:
        table = as_table(batch)
        scores = np.full((table.num_rows, len(CAPABILITY_COLUMNS)), np.nan)
        for row, key in enumerate(table.column("id").to_pylist()):
            found = self.index.get(str(key))
            if found is None:
                self.stats["id_not_in_file"] += 1
            else:
                scores[row] = self.matrix[found]
        return like_input(batch, _score_columns(table, scores, CAPABILITY_COLUMNS))


def score_capabilities_prompted(
    ds: Any,
    make_generate: Callable[[], Callable],
    config: PromptedScorerConfig = PromptedScorerConfig(),
    concurrency=(1, 1),
    num_gpus=0.0,
) -> Any:
    """`ds` with prompted `cap_*` columns, one scorer model per actor."""
    args = (config, make_generate)
    return map_actor_pool(ds, PromptedCapabilityScorer, args, 16, concurrency, num_gpus)


def score_capabilities_embedding(
    ds: Any, config: EmbeddingScorerConfig = EmbeddingScorerConfig(), concurrency=(1, 2)
) -> Any:
    """`ds` with the offline (embedding-similarity) `cap_*` columns."""
    args = (config,)
    return map_actor_pool(ds, EmbeddingCapabilityScorer, args, 4 * config.batch_size, concurrency)


def score_capabilities_imported(ds: Any, path: str, concurrency=(1, 2)) -> Any:
    """`ds` with `cap_*` columns imported from the user's file (JSONL or Parquet)."""
    return map_actor_pool(ds, ImportedCapabilityScores, (path,), 1024, concurrency)

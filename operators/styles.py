"""Interaction styles of a sample (mmSSR), multi-label: a rule-based styler and a prompted one.

mmSSR (Lyu et al., "Cream of the Crop", arXiv 2503.13383) tags every VQA instance with the
interaction styles it exercises, out of nine: multi-choice, coordinate, yes/no,
word/short phrase, short description, detailed description, comparison, chain-of-thought and
specified style; its selection bins candidates by style so no style crowds the others out.

The rule-based styler reads the conversation and needs no model: one *answer-format* style
(multi-choice, coordinate, yes/no, word/short phrase, short/detailed description; exactly one
per row, decided by the answers and the options in the question) plus any of the three
*additive* styles (comparison, chain-of-thought, specified style) whose cues appear. The
prompted styler asks an instruction-tuned model mmSSR's style question through any batched
`generate(prompts) -> texts` callable and keeps the style names it finds in the reply.
Column `styles`: list of style names in the order of `STYLES`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from operators.batches import (
    as_table,
    like_input,
    map_actor_pool,
    messages_column,
    question_answer,
    set_column,
)
from operators.schema import STYLES

__all__ = [
    "ANSWER_FORMATS",
    "POOL_STYLE_TO_MMSSR",
    "STYLES",
    "PromptedStyler",
    "PromptedStylerConfig",
    "RuleStyler",
    "answer_format",
    "conversation_prompt",
    "parse_styles",
    "rule_styles",
    "style_prompted",
    "style_rules",
]

ANSWER_FORMATS = STYLES[:6]  # exactly one per row (the rule styler's primary label)

# The synthetic pool's answer formats on mmSSR's names: a number is a one-word answer.
POOL_STYLE_TO_MMSSR = {
    "word/short phrase": "word/short phrase",
    "number": "word/short phrase",
    "yes/no": "yes/no",
    "multi-choice": "multi-choice",
}

_OPTION = re.compile(r"(?:^|[\s\n(])\(?([A-H])[\.\):]\s*\S")
_LETTER_ANSWER = re.compile(r"^\(?([A-H])\)?(?:[\.\):]|$|\s)")
_COORD = re.compile(r"[\[(]\s*-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?){1,3}\s*[\])]")
_COORD_ASK = re.compile(r"\b(bounding box|coordinates?|bbox)\b", re.I)
_YES_NO = re.compile(r"^(yes|no)\b", re.I)
_COMPARISON = re.compile(
    r"\b(compare|comparison|compared|differences?|differ|similarit(y|ies)|versus|vs\.?"
    r"|(more|less|fewer|greater|larger|smaller|bigger|taller|shorter|higher|lower) than"
    r"|tallest|largest|highest|smallest|shortest|lowest|biggest|most|least)\b"
    r"|\bwhich\b[^?]*\b(taller|larger|bigger|smaller|shorter|higher|lower|heavier|lighter"
    r"|better|worse|more|less|fewer)\b",
    re.I,
)
_COT_ASK = re.compile(r"step[- ]by[- ]step|explain your reasoning|show your (work|reasoning)", re.I)
_COT_ANSWER = re.compile(
    r"\b(step \d|first,|second,|then,|therefore|thus|hence|so the answer is|because|"
    r"let's think|as a result)\b",
    re.I,
)
_SPECIFIED = re.compile(
    r"\b(answer (with|using|in)|respond (with|in)|reply (with|in)|single word|one word"
    r"|in (\d+|one|two|three|a few) (words?|sentences?)|answer yes or no|in json|format"
    r"|option'?s letter|directly)\b",
    re.I,
)
_SENTENCE_END = re.compile(r"[.!?](\s|$)")


def answer_format(question: str, answer: str) -> str:
    """The one answer-format style of a QA pair (first rule that matches wins)."""
    answer = answer.strip()
    options = {m.group(1) for m in _OPTION.finditer(question)}
    letter = _LETTER_ANSWER.match(answer)
    if {"A", "B"} <= options and (letter or len(answer.split()) <= 6):
        return "multi-choice"
    if _COORD.search(answer) or (_COORD_ASK.search(question) and re.search(r"\d", answer)):
        return "coordinate"
    if _YES_NO.match(answer):
        return "yes/no"
    words = len(answer.split())
    if words <= 4 and len(_SENTENCE_END.findall(answer.rstrip(".") + " ")) <= 1:
        return "word/short phrase"
    if words <= 60 and len(_SENTENCE_END.findall(answer)) <= 3:
        return "short description"
    return "detailed description"


def rule_styles(messages: Sequence[Mapping[str, str]]) -> list[str]:
    """mmSSR styles of one conversation by rules: one answer format plus additive cues.

    >>> rule_styles([{"role": "user", "content": "Is it red? Answer yes or no."},
    ...              {"role": "assistant", "content": "Yes"}])
    ['yes/no', 'specified style']
    """
    question, answer = question_answer(messages)
    found = {answer_format(question, answer)}
    if _COMPARISON.search(question):
        found.add("comparison")
    if _COT_ASK.search(question) or (
        _COT_ANSWER.search(answer) and len(_SENTENCE_END.findall(answer)) >= 2
    ):
        found.add("chain-of-thought")
    if _SPECIFIED.search(question):
        found.add("specified style")
    return [s for s in STYLES if s in found]


def _styles_type() -> pa.DataType:
    return pa.list_(pa.string())


class RuleStyler:
    """Ray Data task or in-process operator: adds `styles` by rules (no model)."""

    def __init__(self, column: str = "styles"):
        self.column = column

    def __call__(self, batch: pa.Table | dict) -> pa.Table | dict:
        table = as_table(batch)
        styles = [rule_styles(m) for m in messages_column(table)]
        return like_input(batch, set_column(table, self.column, pa.array(styles, _styles_type())))


def style_rules(ds: Any, column: str = "styles") -> Any:
    """`ds` with the rule-based `styles` column (plain tasks: the rules need no model)."""
    return ds.map_batches(RuleStyler(column), batch_format="pyarrow", batch_size=1024)


def conversation_prompt(messages: Sequence[Mapping[str, str]], query: str) -> str:
    """The VQA instance as "Question: ... Answer: ..." lines, then the query (mmSSR's layout)."""
    lines = []
    for message in messages:
        content = (message.get("content") or "").strip()
        if message.get("role") == "user":
            lines.append(f"Question: {content}")
        elif message.get("role") == "assistant":
            lines.append(f"Answer: {content}")
    return "\n".join(lines) + "\n" + query


STYLE_QUERY = "Interaction style candidates: [" + ", ".join(STYLES) + "]\nStyles: "
_ALIASES = {
    "multi-choice": ("multi-choice", "multiple choice", "multiple-choice"),
    "coordinate": ("coordinate",),
    "yes/no": ("yes/no", "yes or no"),
    "word/short phrase": ("word/short phrase", "word/short-phrase", "short phrase"),
    "short description": ("short description",),
    "detailed description": ("detailed description",),
    "comparison": ("comparison",),
    "chain-of-thought": ("chain-of-thought", "chain of thought", "step-by-step"),
    "specified style": ("specified style",),
}


def parse_styles(text: str | None) -> tuple[list[str] | None, str | None]:
    """(styles, None) from a styler's reply, or (None, reason) when it names none.

    >>> parse_styles("Styles: yes/no, specified style")
    (['yes/no', 'specified style'], None)
    >>> parse_styles("I cannot tell.")
    (None, 'no_style')
    """
    if text is None or not text.strip():
        return None, "empty"
    lowered = text.lower()
    if lowered.lstrip().startswith("styles:"):
        lowered = lowered.lstrip()[len("styles:") :]
    found = [s for s in STYLES if any(alias in lowered for alias in _ALIASES[s])]
    return (found, None) if found else (None, "no_style")


@dataclass(frozen=True)
class PromptedStylerConfig:
    """Prompted styler settings."""

    column: str = "styles"  # output column (list of style names; null when unparsable)
    batch_size: int = 64  # prompts per generate() call
    with_media: bool = False  # send prompt rows with the sample's media (a multimodal styler)


class PromptedStyler:
    """Operator: asks `generate` mmSSR's style question per row; adds `styles`.

    `generate(prompts) -> texts` is any batched text generator (the VLM runtime, vLLM, an HF
    model); pass `make_generate`, a picklable zero-argument factory, so that each Ray actor
    builds its own model once. Unparsable replies give a null and count a reason in `stats`.
    """

    def __init__(self, config: PromptedStylerConfig, make_generate: Callable[[], Callable]):
        self.config, self.generate = config, make_generate()
        self.stats: Counter = Counter()

    def __call__(self, batch: pa.Table | dict) -> pa.Table | dict:
        table = as_table(batch)
        prompts: list = [conversation_prompt(m, STYLE_QUERY) for m in messages_column(table)]
        if self.config.with_media:
            from operators.prompted_generation import with_media

            prompts = with_media(table, prompts)
        replies: list[str] = []
        for start in range(0, len(prompts), self.config.batch_size):
            replies.extend(self.generate(prompts[start : start + self.config.batch_size]))
        styles, errors = [], []
        for reply in replies:
            found, reason = parse_styles(reply)
            self.stats[reason or "parsed"] += 1
            styles.append(found)
            errors.append(reason)
        table = set_column(table, self.config.column, pa.array(styles, _styles_type()))
        table = set_column(table, "style_error", pa.array(errors, pa.string()))
        return like_input(batch, table)


def style_prompted(
    ds: Any,
    make_generate: Callable[[], Callable],
    config: PromptedStylerConfig = PromptedStylerConfig(),
    concurrency=(1, 1),
    num_gpus=0.0,
) -> Any:
    """`ds` with `styles` from a prompted model, one model per actor of the pool."""
    args = (config, make_generate)
    return map_actor_pool(ds, PromptedStyler, args, 4 * config.batch_size, concurrency, num_gpus)

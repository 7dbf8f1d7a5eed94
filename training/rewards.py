"""Verifiable rewards for GRPO, as plain functions `(completions, answer, **kwargs) -> floats`.

TRL's `GRPOTrainer` calls each reward with the completions of a batch and every other
dataset column as keyword arguments; here the column is `answer` (the row's reference).
Completions are strings, or chat turns (`[{"role": "assistant", "content": ...}]`) for a
conversational dataset. The answer is read from `<answer>...</answer>` when the completion
uses the R1 format (PISM / CMAB train with it), else from the whole completion.

- `accuracy_reward`: 1.0 when the answer matches, by the reference's kind: a multiple-choice
  letter (A-D) compares letters, a number compares within `NUMERIC_TOLERANCE` (relative), text
  compares after normalization (case, punctuation, articles, surrounding space).
- `format_reward`: 1.0 when the completion is `<think>...</think><answer>...</answer>`.
"""

from __future__ import annotations

import re

__all__ = [
    "accuracy_reward",
    "completion_text",
    "extract_answer",
    "format_reward",
    "normalize_answer",
    "numeric_match",
    "REWARDS",
]

NUMERIC_TOLERANCE = 1e-2  # relative tolerance of numeric answers
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
THINK_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)
LETTER = re.compile(r"^\(?([A-D])\)?[.):]?$")
NUMBER = re.compile(r"^[-+]?\d+(?:\.\d+)?$")


def completion_text(completion) -> str:
    """The text of a completion: a string, or the content of its (last) chat turn."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def extract_answer(text: str) -> str:
    """The answer part of a completion: inside `<answer>` tags when present.

    >>> extract_answer("<think>red, clearly</think><answer> red </answer>")
    'red'
    """
    match = ANSWER_TAG.search(text)
    return (match.group(1) if match else text).strip()


def normalize_answer(text: str) -> str:
    """Lower case, no surrounding punctuation, no articles, single spaces.

    >>> normalize_answer("  The Red. ")
    'red'
    """
    text = text.lower().strip().strip(".,;:!?\"'")
    words = [w for w in text.split() if w not in ("a", "an", "the")]
    return " ".join(words)


def numeric_match(predicted: str, reference: str, tolerance: float = NUMERIC_TOLERANCE) -> bool:
    """Numbers equal within a relative tolerance (absolute near zero).

    >>> numeric_match("7.0", "7"), numeric_match("8", "7")
    (True, False)
    """
    try:
        a, b = float(predicted), float(reference)
    except ValueError:
        return False
    return abs(a - b) <= tolerance * max(1.0, abs(b))


def _matches(predicted: str, reference: str) -> bool:
    reference = reference.strip()
    letter = LETTER.match(reference)
    if letter:
        found = LETTER.match(predicted.strip())
        return bool(found) and found.group(1) == letter.group(1)
    if NUMBER.match(reference):
        return numeric_match(predicted.strip().rstrip("."), reference)
    return normalize_answer(predicted) == normalize_answer(reference)


def accuracy_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """1.0 per completion whose answer matches the reference, else 0.0.

    >>> accuracy_reward(["Red.", "blue", "<answer>B</answer>", "7.001"], ["red", "red", "B", "7"])
    [1.0, 0.0, 1.0, 1.0]
    """
    return [
        float(_matches(extract_answer(completion_text(c)), str(a)))
        for c, a in zip(completions, answer, strict=True)
    ]


def format_reward(completions: list, **kwargs) -> list[float]:
    """1.0 per completion in the `<think>...</think><answer>...</answer>` format.

    >>> format_reward(["<think>it moves</think><answer>left</answer>", "left"])
    [1.0, 0.0]
    """
    return [float(bool(THINK_FORMAT.match(completion_text(c)))) for c in completions]


REWARDS = {"accuracy": accuracy_reward, "format": format_reward}

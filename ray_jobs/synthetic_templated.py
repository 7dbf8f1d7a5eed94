"""Templated instruction pools with known duplicates: the hard case for near-duplicate text.

Real instruction data shares wording between distinct samples: one instruction template is
asked of thousands of pictures or passages ("Describe the {x} in detail ..."), and answers
open and close with the same phrases ("The image shows ...", "Let me know if ..."). Shingle
overlap between two distinct rows of one template is then far above that of random text,
which is what makes a low MinHash threshold remove distinct rows. This generator builds such
rows: an English instruction template with 1-3 slots filled by content words, an optional
context sentence, an answer opening template with a slot, a body of 10-60 content words and
an optional closing phrase. Content words are pseudo-words drawn from a Zipf-like vocabulary
(ray_jobs/synthetic_text.py), so distinct rows also share frequent words.

A share of rows (`dup_rate`, 0.2) copy an earlier original: exactly (`exact_share`) or with
5-20% of the words replaced, dropped or inserted. Same return shape as
`synthetic_text.generate_text_rows`, so `write_text_pool(..., generate=...)` writes it.
"""

from __future__ import annotations

import numpy as np

from ray_jobs.synthetic_text import _edit, _vocabulary

__all__ = ["generate_templated_rows"]

INSTRUCTIONS = (
    "Describe the {} shown in the picture in detail, including its {}.",
    "What is the main {} in this image and what is it used for?",
    "Look at the {} carefully. How many {} can you count?",
    "Write a short caption for this photo of a {}.",
    "Explain step by step how the {} works and why the {} matters.",
    "Summarize the following passage about {} in two sentences.",
    "Answer the question based on the chart: which {} has the highest {}?",
    "Read the text in the image and tell me what it says about {}.",
    "Is there a {} in the image? Answer yes or no and explain.",
    "Translate the following sentence about {} into plain English.",
    "Give three reasons why the {} could be described as {}.",
    "What happens to the {} at the end of the video?",
    "Compare the {} on the left with the {} on the right.",
    "You are a helpful assistant. Please classify this {} into one of the given categories.",
    "Based on the document, what is the {} of the {}?",
    "Identify the color and the shape of the {} in the scene.",
    "Write a question that a student might ask about {} and answer it.",
    "List the objects that appear next to the {} in this picture.",
    "What is the relationship between the {} and the {} in this diagram?",
    "Provide a detailed description of the {} for a visually impaired reader.",
)
OPENINGS = (
    "The image shows a {}",
    "In this picture we can see the {}",
    "Sure! Here is a description of the {}:",
    "Based on the image, the answer is {}",
    "The main object is a {} and",
    "According to the chart, the {}",
    "Certainly. The {} in the video",
    "The text in the image reads {}",
    "Yes, there is a {}",
    "Here is a short summary of the {}:",
)
CLOSINGS = (
    "Let me know if you would like more details about any part of it.",
    "I hope this helps you understand the image better.",
    "Overall, the scene looks calm and well organized.",
    "This is the most likely answer given the visible evidence.",
    "Feel free to ask a follow-up question.",
)


def _content(rng: np.random.Generator, words: np.ndarray, p: np.ndarray, lo: int, hi: int):
    return words[rng.choice(len(words), int(rng.integers(lo, hi + 1)), p=p)].tolist()


def _fill(template: str, rng, words, p) -> list[str]:
    slots = [" ".join(_content(rng, words, p, 1, 3)) for _ in range(template.count("{}"))]
    return template.format(*slots).split()


def _original(rng: np.random.Generator, words: np.ndarray, p: np.ndarray, body) -> list[str]:
    """One distinct row's words: instruction, context?, opening, body, closing?."""
    text = _fill(INSTRUCTIONS[int(rng.integers(len(INSTRUCTIONS)))], rng, words, p)
    if rng.random() < 0.5:
        text += _content(rng, words, p, 5, 25)
    text.append("||")  # question | answer boundary, removed below
    text += _fill(OPENINGS[int(rng.integers(len(OPENINGS)))], rng, words, p)
    text += _content(rng, words, p, *body)
    if rng.random() < 0.3:
        text += CLOSINGS[int(rng.integers(len(CLOSINGS)))].split()
    return text


def generate_templated_rows(
    n: int,
    seed: int = 0,
    dup_rate: float = 0.2,
    exact_share: float = 0.3,
    vocab: int = 20000,
    body: tuple[int, int] = (10, 60),
) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """(questions, answers, cluster, kind): kind is original / exact / word_edit.

    `body`: the answer body's length range in content words; `vocab`: content words, drawn
    with probability ~ 1 / rank (Zipf's law of natural text)."""
    rng = np.random.default_rng(seed)
    words = _vocabulary(vocab, rng)
    zipf = 1.0 / np.arange(1, vocab + 1) ** 1.0
    zipf /= zipf.sum()
    cluster, kind = np.arange(n), ["original"] * n
    texts: list[list[str]] = []
    is_dup = (rng.random(n) < dup_rate) & (np.arange(n) >= 10)
    for i in range(n):
        if not is_dup[i]:
            texts.append(_original(rng, words, zipf, body))
            continue
        j = int(cluster[int(rng.integers(0, i))])  # copy an original: clusters are stars
        cluster[i] = j
        exact = rng.random() < exact_share
        kind[i] = "exact" if exact else "word_edit"
        if exact:
            texts.append(list(texts[j]))
        else:
            cut = texts[j].index("||")
            edited = _edit(texts[j][:cut] + texts[j][cut + 1 :], rng, words)
            texts.append([*edited[:cut], "||", *edited[cut:]])
    joined = [" ".join(t).split(" || ", 1) for t in texts]
    return [q for q, _ in joined], [a for _, a in joined], cluster, kind

"""MinHash signatures and LSH band keys for near-duplicate text, vectorized over a batch.

The hashing follows datasketch 2.0 exactly (its default "affine32" scheme): every shingle is
hashed with `sha1_hash32` (the first 4 bytes of SHA1, little endian), pre-mixed with the
MurmurHash3 32-bit finalizer, then permutation k maps h -> a_k * h + b_k mod 2^32 with
(a_k, b_k) drawn from `np.random.RandomState(seed)` as `datasketch.MinHash` draws them. So a row's
signature equals `datasketch.MinHash(num_perm, seed)` updated with the same shingles, and two rows
share an LSH band exactly when `datasketch.MinHashLSH` (same bands x rows) puts them in one bucket.

Only the arithmetic is ours: one compiled pass per batch (operators/minhash_kernel.py: SHA1 of
every shingle, the permutation minima, GDO's exact key) instead of one MinHash object per row;
`normalize_text`, `shingles` and `exact_key` stay here as the plain-Python definitions the
kernel is tested against.

Defaults (word 1-grams, verified at threshold 0.6, bands chosen for 0.5, 128 permutations)
are chosen for precision on templated instruction data, where distinct rows share their
instruction template and answer phrasing: on 100k such rows (ray_jobs/synthetic_templated.py)
the exact word-1-gram Jaccard of distinct rows stays below 0.58 and of a 5-20% word edit above
0.64, while with 2-grams the two overlap (0.45 vs 0.41). On the synthetic pool a reworded
question keeps 0.69-0.9 of its words. docs/dedup.md has the trade-off table.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.minhash_kernel import PLACEHOLDER, minhash_rows, normalize_many

__all__ = [
    "MinHashConfig",
    "band_keys",
    "exact_key",
    "mix64",
    "normalize_text",
    "optimal_param",
    "permutations",
    "row_text",
    "row_text_arrays",
    "shingles",
    "signatures",
    "text_keys",
]

NON_WORD = re.compile(r"[^\w\s]+")


@dataclass(frozen=True)
class MinHashConfig:
    """Text near-duplicate settings (help on each field)."""

    num_perm: int = 128  # permutations in a signature (datasketch's num_perm)
    threshold: float = 0.6  # Jaccard similarity at or above which rows are duplicates
    # LSH bands are chosen for this lower similarity when verifying (candidates only: the
    # verification drops those under `threshold`), so pairs just above it still collide
    lsh_threshold: float = 0.5
    unit: str = "word"  # shingle unit: "word" or "char"
    ngram: int = 1  # shingle length in units
    seed: int = 1  # permutation seed (datasketch's default is 1)
    bands: int | None = None  # LSH bands; None: chosen from the threshold (datasketch rule)
    rows: int | None = None  # rows per band; None: chosen with `bands`
    verify: bool = True  # a band candidate is an edge only when its estimated Jaccard >= threshold

    def band_rows(self) -> tuple[int, int]:
        """(bands, rows): given, or minimising equal-weight FP + FN as datasketch does, at
        `lsh_threshold` when verifying (at most `threshold`), else at `threshold`."""
        if self.bands and self.rows:
            return self.bands, self.rows
        at = min(self.lsh_threshold, self.threshold) if self.verify else self.threshold
        return optimal_param(at, self.num_perm)


def _miss_area(b: int, r: int, lo: float, hi: float, points: int = 2001) -> float:
    """Integral over [lo, hi] of (1 - s^r)^b, the chance a pair of similarity s shares no band."""
    xs = np.linspace(lo, hi, points)
    ys = (1 - xs**r) ** b
    return float(np.sum((ys[1:] + ys[:-1]) * np.diff(xs)) / 2)


def optimal_param(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """Bands x rows minimising fp_weight * FP area + fn_weight * FN area of the S-curve.

    The rule of `datasketch.lsh._optimal_param`: a pair of similarity s shares a band with
    probability 1 - (1 - s^r)^b; FP is that integrated over [0, threshold], FN its complement
    over [threshold, 1]. Integrated here with the trapezoid rule on a fine grid.
    """
    best, best_error = (0, 0), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = threshold - _miss_area(b, r, 0.0, threshold)
            fn = _miss_area(b, r, threshold, 1.0)
            error = fp * fp_weight + fn * fn_weight
            if error < best_error:
                best, best_error = (b, r), error
    return best


def normalize_text(text: str) -> str:
    """Lower case, media placeholders and punctuation removed, whitespace collapsed."""
    text = PLACEHOLDER.sub(" ", text.lower())
    return " ".join(NON_WORD.sub(" ", text).split())


def row_text(messages: list[dict], answer: str | None) -> tuple[str, str]:
    """(instruction, answer) of a row: the user turns joined, and the answer.

    The answer is the row's `answer`, else its last assistant turn.
    """
    question = " ".join(m["content"] or "" for m in messages if m["role"] == "user")
    if answer is None:
        replies = [m["content"] or "" for m in messages if m["role"] == "assistant"]
        answer = replies[-1] if replies else ""
    return question, answer


def exact_key(question: str, answer: str) -> int:
    """GDO's exact-duplicate key: SHA1 of normalized `question|||answer`, first 8 bytes."""
    text = f"{normalize_text(question)}|||{normalize_text(answer)}"
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "little")


def shingles(text: str, unit: str = "word", ngram: int = 1) -> list[bytes]:
    """The distinct shingles of normalized `text` as UTF-8 bytes (datasketch's input), unordered."""
    norm = normalize_text(text)
    if unit == "word":
        words = norm.split()
        grams = {" ".join(words[i : i + ngram]) for i in range(max(1, len(words) - ngram + 1))}
    elif unit == "char":
        grams = {norm[i : i + ngram] for i in range(max(1, len(norm) - ngram + 1))}
    else:
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    return [g.encode("utf-8") for g in grams if g]


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b), each shape (num_perm,) uint32."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def text_keys(questions, answers, config: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (n, num_perm) uint32, exact keys (n,) uint64) of question/answer rows.

    A row's MinHash text is `question answer`; its exact key is `exact_key(question, answer)`.
    Both come from one compiled pass over the batch (operators/minhash_kernel.py); a row whose
    normalized text is empty gets the all-max signature, as an empty `datasketch.MinHash`.
    """
    a, b = permutations(config.num_perm, config.seed)
    n = len(questions)
    texts = pa.concat_arrays(
        [_as_strings(questions), _as_strings(answers)]
    )  # segments 0..n-1 questions, n..2n-1 answers
    data, starts, ends = normalize_many(texts)
    char = _char_unit(config.unit)
    return minhash_rows(
        data, starts[:n], ends[:n], starts[n:], ends[n:], char, config.ngram, a, b, True
    )


def signatures(texts, config: MinHashConfig) -> np.ndarray:
    """MinHash signatures, shape (len(texts), num_perm) uint32; all-max for empty text.

    Equal to `datasketch.MinHash(num_perm, seed)` updated with `shingles(text, unit, ngram)`.
    """
    a, b = permutations(config.num_perm, config.seed)
    data, starts, ends = normalize_many(texts)
    char = _char_unit(config.unit)
    sigs, _ = minhash_rows(data, starts, ends, ends, ends, char, config.ngram, a, b, False)
    return sigs


def _char_unit(unit: str) -> bool:
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    return unit == "char"


def _as_strings(values) -> pa.Array:
    array = pa.array(values, pa.large_string()) if isinstance(values, list) else values
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.large_string())


def row_text_arrays(messages, answers) -> tuple[pa.Array, pa.Array]:
    """`row_text` of a whole column: (questions, answers) as Arrow string arrays.

    messages: list<struct<role, content>>; answers: string (null -> the last assistant turn,
    or "" when there is none). Computed with Arrow kernels, no Python object per row.
    """
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    n = len(messages)
    flat = pc.list_flatten(messages)
    parents = pc.list_parent_indices(messages).to_numpy()
    role = pc.fill_null(flat.field("role"), "").to_numpy(zero_copy_only=False)
    content = pc.fill_null(flat.field("content"), "")
    user = role == "user"
    offsets = np.concatenate([[0], np.cumsum(np.bincount(parents[user], minlength=n))])
    grouped = pa.LargeListArray.from_arrays(
        pa.array(offsets, pa.int64()), content.filter(pa.array(user)).cast(pa.large_string())
    )
    questions = pc.binary_join(grouped, pa.scalar(" ", pa.large_string()))
    said = np.flatnonzero(role == "assistant")
    last_of_row = np.append(parents[said][1:] != parents[said][:-1], True)
    last = np.full(n, -1, dtype=np.int64)
    last[parents[said][last_of_row]] = said[last_of_row]
    blank = pa.scalar("", pa.large_string())
    replies = pa.array([""] * n, pa.large_string())
    if len(said):
        replies = content.cast(pa.large_string()).take(pa.array(np.maximum(last, 0)))
        replies = pc.if_else(pa.array(last >= 0), replies, blank)
    given = _as_strings(answers)
    return questions, pc.if_else(pc.is_null(given), replies, given)


def mix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer on a uint64 array (a bijection that spreads bits)."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xFF51AFD7ED558CCD)
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xC4CEB9FE1A85EC53)
        x ^= x >> np.uint64(33)
    return x


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 key per (row, band), shape (n, bands); equal signature slices -> equal keys.

    Band i covers signature positions [i * rows, (i + 1) * rows), as in datasketch's
    `MinHashLSH.hashranges`. The band index is folded in so keys of different bands never meet.
    """
    n = sigs.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(bands):
            k = np.full(n, np.uint64(i + 1) * np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
            for j in range(i * rows, (i + 1) * rows):
                k = mix64(k ^ sigs[:, j].astype(np.uint64))
            keys[:, i] = k
    return keys

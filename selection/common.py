"""Shared pieces of every selection method: column access, text fields, fingerprints, results.

Selection is pure: an Arrow table of pool rows plus descriptors comes in; row indices (in
order) and a report come out. Everything here is vectorized with Arrow compute and NumPy so a
10M-row pool stays within seconds; nothing imports Ray.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "AnswerText",
    "answer_text",
    "MissingColumnsError",
    "Subset",
    "column_codes",
    "composition",
    "distinct_token_counts",
    "eligible_mask",
    "float_column",
    "has_column",
    "per_unique",
    "pool_fingerprint",
    "question_answer",
    "require_columns",
    "resolve_budget",
    "sorted_unique",
    "string_column",
    "text_codes",
    "token_counts",
]

WORD_PATTERN = r"[A-Za-z0-9_]+"


class MissingColumnsError(ValueError):
    """A method needs descriptor columns that the pool does not have."""


@dataclass
class Subset:
    """What a method returns: pool row indices in selection order, a stage per row, a report.

    `rows` index the input table; `stage` names the stage of each position (orderings set it,
    methods leave "all" or the hierarchical-plan stage); `report` is JSON-ready and says what
    each constraint did.
    """

    rows: np.ndarray
    stage: np.ndarray
    report: dict = field(default_factory=dict)
    flagged: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64)
        self.stage = np.asarray(self.stage, dtype=object)
        if len(self.stage) != len(self.rows):
            raise ValueError("stage must have one label per selected row")


def has_column(table: pa.Table, name: str) -> bool:
    return name in table.column_names


def require_columns(table: pa.Table, names: list[str], method: str) -> None:
    """Raise with every missing column named, so the user sees all of them at once."""
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise MissingColumnsError(
            f"{method} needs columns {missing} that the pool does not have "
            f"(have: {sorted(table.column_names)})"
        )


def float_column(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64 with nulls (and NaN) as NaN."""
    col = table.column(name)
    col = pc.cast(col, pa.float64()) if col.type != pa.float64() else col
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=True)


def string_column(table: pa.Table, name: str, default: str = "") -> pa.Array:
    """A string column as one Arrow array with nulls replaced by `default`."""
    col = table.column(name).combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    return pc.fill_null(col, default)


def column_codes(values: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Integer code per row and the sorted distinct labels (codes follow sorted label order)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    enc = pc.dictionary_encode(values)
    labels = enc.dictionary.to_pylist()
    order = np.argsort(np.array(labels, dtype=object), kind="stable")
    remap = np.empty(len(labels), dtype=np.int64)
    remap[order] = np.arange(len(labels))
    codes = remap[enc.indices.to_numpy(zero_copy_only=False)]
    return codes, [labels[i] for i in order]


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique by sorting: NumPy 2.4's hash-based np.unique(x) is ~20x slower on 1e6+ ints."""
    s = np.sort(x)
    if len(s) == 0:
        return s
    return s[np.concatenate([[True], s[1:] != s[:-1]])]


def per_unique(values: pa.Array, fn):
    """Apply `fn` to the distinct values only, then spread back: pools repeat answers a lot."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    enc = pc.dictionary_encode(values)
    out = fn(enc.dictionary)
    if isinstance(out, np.ndarray):
        return out[enc.indices.to_numpy(zero_copy_only=False)]
    return pc.take(out, enc.indices)


def _normalize(text: pa.Array) -> pa.Array:
    """GDO's normalize_text: strip, collapse every whitespace run to one space."""
    return pc.utf8_trim_whitespace(pc.binary_join(pc.utf8_split_whitespace(text), " "))


def _strip_media(text: pa.Array) -> pa.Array:
    for token in ("<image>", "<video>", "<audio>"):
        text = pc.replace_substring(text, token, " ")
    return text


def question_answer(
    table: pa.Table,
    rows: np.ndarray | None = None,
    answers: AnswerText | None = None,
    materialize_answers: bool = True,
) -> tuple[pa.Array, pa.Array | None, pa.Array]:
    """(question, answer, raw question) of `rows` (default all): the first user turn without
    media placeholders, and the `answer` column.

    Whitespace is collapsed as in GDO's normalize_text. The raw question (placeholders removed,
    newlines kept) is what the multiple-choice pattern looks at.
    """
    n = table.num_rows
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    msgs = table.column("messages").combine_chunks()
    flat = pc.list_flatten(msgs)
    parents = pc.list_parent_indices(msgs).to_numpy()
    is_user = pc.equal(pc.fill_null(flat.field("role"), ""), "user").to_numpy(zero_copy_only=False)
    user_pos = np.flatnonzero(is_user)
    first_parent, first_idx = np.unique(parents[user_pos], return_index=True)
    raw = np.full(n, -1, dtype=np.int64)
    raw[first_parent] = user_pos[first_idx]
    raw = raw[rows]
    if len(flat):
        contents = pc.fill_null(flat.field("content"), "")
        q_raw = pc.if_else(pa.array(raw >= 0), pc.take(contents, pa.array(np.maximum(raw, 0))), "")
    else:
        q_raw = pa.array([""] * len(rows), pa.string())
    q_raw = _strip_media(q_raw)
    answers = answers if answers is not None else answer_text(table, rows)
    return _normalize(q_raw), answers.values() if materialize_answers else None, q_raw


@dataclass
class AnswerText:
    """Answers as distinct normalized strings plus an index per row: answers repeat a lot
    ("yes", "A", "2"), so per-answer work runs once per distinct value."""

    distinct: pa.Array
    index: np.ndarray

    def values(self) -> pa.Array:
        return pc.take(self.distinct, pa.array(self.index))

    def per_row(self, fn) -> np.ndarray:
        return fn(self.distinct)[self.index]


def answer_text(table: pa.Table, rows: np.ndarray) -> AnswerText:
    """The normalized `answer` of `rows` ("" when missing)."""
    if not has_column(table, "answer"):
        return AnswerText(pa.array([""], pa.string()), np.zeros(len(rows), dtype=np.int64))
    enc = pc.dictionary_encode(pc.take(string_column(table, "answer"), pa.array(rows)))
    return AnswerText(_normalize(enc.dictionary), enc.indices.to_numpy(zero_copy_only=False))


def token_counts(text: pa.Array, unique: bool = False) -> np.ndarray:
    """Number of [A-Za-z0-9_]+ tokens per row (GDO's tokenize); `unique` computes it once per
    distinct value (worth it for answers, which repeat a lot)."""

    return per_unique(text, _count_tokens) if unique else _count_tokens(text)


def _count_tokens(values: pa.Array) -> np.ndarray:
    return pc.count_substring_regex(values, WORD_PATTERN).to_numpy(zero_copy_only=False)


def distinct_token_counts(text: pa.Array) -> np.ndarray:
    """Number of distinct lower-cased tokens per row, vectorized over the whole column."""
    return per_unique(text, _distinct_tokens)


def _distinct_tokens(text: pa.Array) -> np.ndarray:
    n = len(text)
    parts = pc.split_pattern_regex(pc.utf8_lower(text), r"[^A-Za-z0-9_]+")
    flat = pc.list_flatten(parts)
    parents = pc.list_parent_indices(parts).to_numpy()
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    if not keep.any():
        return np.zeros(n, dtype=np.int64)
    enc = pc.dictionary_encode(flat.filter(pa.array(keep)))
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    keys = parents[keep].astype(np.int64) * max(len(enc.dictionary), 1) + codes
    uniq = sorted_unique(keys)
    return np.bincount(uniq // max(len(enc.dictionary), 1), minlength=n)


def text_codes(question: pa.Array, answer: pa.Array | AnswerText) -> np.ndarray:
    """One integer per distinct (question, answer) pair. GDO dedups on SHA1 of "q|||a"; equal
    pairs get equal codes, which is the same test without hashing every row in Python (and
    without building the joined strings: 10M of them cost a gigabyte)."""
    q = pc.dictionary_encode(question).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if isinstance(answer, AnswerText):
        a, n_a = answer.index.astype(np.int64), len(answer.distinct)
    else:
        enc = pc.dictionary_encode(answer)
        a, n_a = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(enc.dictionary)
    key = q * max(n_a, 1) + a
    order = np.argsort(key, kind="stable")
    first = np.concatenate([[True], key[order][1:] != key[order][:-1]]) if len(key) else key
    codes = np.empty(len(key), dtype=np.int64)
    codes[order] = np.cumsum(first) - 1
    return codes


def eligible_mask(table: pa.Table, drop_duplicates: bool) -> tuple[np.ndarray, dict]:
    """Rows a method may pick: all, less those the proxy could not process (a `model_error`:
    too long, media error, placeholder mismatch; their descriptors are NaN, not measurements)
    and those the dedup stage marked `dup_keep == false`. The report counts each by reason."""
    n = table.num_rows
    mask = np.ones(n, dtype=bool)
    report = {"pool_rows": n, "dup_keep_column": has_column(table, "dup_keep")}
    if has_column(table, "model_error"):
        errors = table.column("model_error").combine_chunks()
        failed = pc.is_valid(errors).to_numpy(zero_copy_only=False)
        reasons = pc.utf8_trim_whitespace(
            pc.list_element(pc.split_pattern(errors.filter(pa.array(failed)), ":"), 0)
        )
        counts = pc.value_counts(reasons).to_pylist() if failed.any() else []
        report["dropped_model_error"] = {
            str(c["values"]): int(c["counts"]) for c in sorted(counts, key=lambda c: c["values"])
        }
        mask &= ~failed
    if drop_duplicates and has_column(table, "dup_keep"):
        keep = pc.fill_null(table.column("dup_keep"), True).to_numpy(zero_copy_only=False)
        before = int(mask.sum())
        mask &= keep.astype(bool)
        report["dropped_dup_keep_false"] = int(before - mask.sum())
    report["eligible_rows"] = int(mask.sum())
    return mask, report


def resolve_budget(budget: float | int | None, pool: int) -> int | None:
    """The row count a budget asks for out of `pool` eligible rows; None means auto.

    An integer >= 1 is a row count (at most the pool); a float in (0, 1] is a fraction of the
    pool, rounded down but at least one row of a non-empty pool: `1.0` is the whole pool. Any
    other value is an error, so that `1.0` can never silently mean one row.
    """
    if budget is None:
        return None
    if isinstance(budget, bool):
        raise ValueError(f"budget must be a row count or a fraction, got {budget!r}")
    if isinstance(budget, int | np.integer):
        if budget < 1:
            raise ValueError(f"a row-count budget must be >= 1, got {budget}")
        return min(pool, int(budget))
    budget = float(budget)
    if not 0.0 < budget <= 1.0:
        raise ValueError(
            f"a fractional budget must be in (0, 1], got {budget}; give a row count as an integer"
        )
    return min(pool, max(1 if pool else 0, int(pool * budget + 1e-9)))


def _array_bytes(arr: pa.Array) -> bytes:
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = pc.fill_null(arr.cast(pa.large_string()), "\x00null")
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
            arr.offset : arr.offset + len(arr) + 1
        ]
        data = arr.buffers()[2]
        start, end = int(offsets[0]), int(offsets[-1])
        body = b"" if data is None else data.to_pybytes()[start:end]
        return (offsets - start).tobytes() + body
    if (
        pa.types.is_integer(arr.type)
        or pa.types.is_floating(arr.type)
        or pa.types.is_boolean(arr.type)
    ):
        return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False).tobytes()
    return str(arr.to_pylist()).encode()


def pool_fingerprint(table: pa.Table, columns: list[str]) -> str:
    """SHA-256 over the row order, ids and the columns a method read: same pool, same hash."""
    h = hashlib.sha256()
    for name in ["id", *sorted(set(columns) - {"id"})]:
        if not has_column(table, name):
            continue
        h.update(name.encode() + b"\x00")
        h.update(_array_bytes(table.column(name).combine_chunks()))
    return "sha256:" + h.hexdigest()


def composition(table: pa.Table, rows: np.ndarray, columns: list[str]) -> dict:
    """Counts of the selected rows per value of each named column (those present)."""
    out: dict = {}
    idx = pa.array(np.asarray(rows, dtype=np.int64))
    for name in columns:
        if not has_column(table, name):
            continue
        vals = pc.take(table.column(name).combine_chunks(), idx)
        counts = pc.value_counts(
            pc.cast(vals, pa.string()) if not pa.types.is_string(vals.type) else vals
        )
        pairs = sorted(
            ((str(v["values"]), int(v["counts"])) for v in counts.to_pylist()),
            key=lambda kv: (-kv[1], kv[0]),
        )
        out[name] = dict(pairs)
    return out

"""Batch plumbing shared by the operators: Arrow batches in, the same rows plus columns out.

Operators run inside Ray Data `map_batches(batch_format="pyarrow")`, so they take a
`pyarrow.Table` and return it with columns appended (never fewer rows). A dict of columns
(lists or NumPy arrays) is accepted too, for in-process use, and a dict comes back. The text
helpers turn the `messages` column into what text models read: the question (user turns),
the answer (assistant turns), with `<image>` / `<video>` placeholders removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "as_table",
    "fixed_size_list",
    "like_input",
    "map_actor_pool",
    "messages_column",
    "question_answer",
    "sample_text",
    "set_column",
    "vectors_of",
]

PLACEHOLDER = re.compile(r"<(image|video)>\s*")


def as_table(batch: pa.Table | Mapping[str, Any]) -> pa.Table:
    """The batch as an Arrow table (a dict of lists or NumPy arrays is converted)."""
    if isinstance(batch, pa.Table):
        return batch
    return pa.table({k: pa.array(list(v)) for k, v in batch.items()})


def like_input(batch: pa.Table | Mapping[str, Any], table: pa.Table) -> pa.Table | dict:
    """Return `table` in the form the batch came in (a table, or a dict of lists)."""
    return table if isinstance(batch, pa.Table) else table.to_pydict()


def set_column(table: pa.Table, name: str, values: pa.Array | list) -> pa.Table:
    """Add column `name` (or replace it when the batch already has one)."""
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


def fixed_size_list(vectors: np.ndarray, valid: np.ndarray, dtype: str) -> pa.Array:
    """(n, d) vectors as a fixed-size list array of `dtype`; rows not `valid` are null."""
    n, d = vectors.shape
    values = pa.array(np.ascontiguousarray(vectors, dtype=dtype).reshape(-1))
    mask = pa.array(~valid.astype(bool))
    return pa.FixedSizeListArray.from_arrays(values, d, mask=mask)


def messages_column(table: pa.Table) -> list[list[dict]]:
    """The `messages` column as Python lists of {role, content} dicts."""
    return [m or [] for m in table.column("messages").to_pylist()]


def question_answer(messages: Sequence[Mapping[str, str]]) -> tuple[str, str]:
    """(question, answer): the user turns and the assistant turns, placeholders removed."""
    questions, answers = [], []
    for message in messages:
        content = PLACEHOLDER.sub("", message.get("content") or "").strip()
        if message.get("role") == "assistant":
            answers.append(content)
        elif message.get("role") == "user":
            questions.append(content)
    return "\n".join(questions), "\n".join(answers)


def sample_text(messages: Sequence[Mapping[str, str]]) -> str:
    """The text a sentence model embeds for a sample: its turns in order, placeholders removed."""
    turns = [PLACEHOLDER.sub("", m.get("content") or "").strip() for m in messages]
    return "\n".join(t for t in turns if t)


def map_actor_pool(
    ds: Any,
    operator: type,
    args: tuple,
    batch_size: int,
    concurrency: tuple[int, int] = (1, 2),
    num_gpus: float = 0,
) -> Any:
    """`ds` with `operator(*args)` applied by an autoscaling actor pool (Arrow batches).

    Each actor loads its model once in `__init__` and serves batches in `__call__`;
    `concurrency` is (min, max) actors and `num_gpus` the share of a GPU each holds.
    """
    import ray

    return ds.map_batches(
        operator,
        fn_constructor_args=args,
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1]),
        num_gpus=num_gpus,
    )


def vectors_of(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """((n, d) float32 vectors, (n,) valid mask) of a fixed-size (or regular) list column."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(array)
    valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), bool)
    if pa.types.is_fixed_size_list(array.type):
        d = array.type.list_size
        flat = array.values.slice(array.offset * d, n * d)
        return np.asarray(flat.to_numpy(zero_copy_only=False), np.float32).reshape(n, d), valid
    rows = array.to_pylist()
    d = max((len(r) for r in rows if r is not None), default=0)
    out = np.zeros((n, d), np.float32)
    for i, row in enumerate(rows):
        if row is not None and len(row) == d:
            out[i] = row
        else:
            valid[i] = False
    return out, valid

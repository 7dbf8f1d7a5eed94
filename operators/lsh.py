"""LSH buckets to candidate edges with a hash shuffle of Ray tasks.

Records are (key, node) rows: one per (row, band) for MinHash bands and bit-sampling bands, one
per row for exact SHA1 keys. A hash of the key picks one of `partitions` groups; each group is
sorted by key in NumPy, and every bucket of equal keys becomes a star of edges to its smallest
node. Buckets whose members must also have copies of the same media are verified against a
fingerprint table (node -> kind, pHash words, thumbnail and grey block map;
operators/phash.py) that every partition reads from the object store: an edge is kept only
when the two media are copies (grid-LSH collisions are candidates only; MinHash band
collisions are the LSH candidates themselves, as `datasketch.MinHashLSH.query` returns them).
"""

from __future__ import annotations

import numpy as np

from operators.minhash import mix64
from operators.phash import HASH_WORDS, KIND_IMAGE, MediaHashConfig, hamming

__all__ = [
    "bucket_edges",
    "fingerprint_table",
    "partition_of",
    "shuffle_to_edges",
    "verified_bucket_edges",
]


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    return (mix64(keys.astype(np.uint64) ^ np.uint64(0x5BD1E995)) % np.uint64(partitions)).astype(
        np.int64
    )


def _buckets(keys: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by (key, node); return the order and each position's bucket start."""
    order = np.lexsort((nodes, keys))
    sorted_keys = keys[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    return order, first


def _shared(keys: np.ndarray) -> np.ndarray:
    """Mask of the records whose key occurs more than once (most LSH keys are singletons)."""
    order = np.argsort(keys)
    same = keys[order][1:] == keys[order][:-1]
    mask = np.zeros(len(keys), dtype=bool)
    mask[order[1:][same]] = True
    mask[order[:-1][same]] = True
    return mask


def bucket_edges(group: dict) -> dict:
    """Edges (member -> smallest node of its bucket) of one partition of (key, node) records."""
    shared = _shared(group["key"].astype(np.uint64))
    keys, nodes = group["key"].astype(np.uint64)[shared], group["node"].astype(np.int64)[shared]
    order, first = _buckets(keys, nodes)
    sorted_nodes = nodes[order]
    hi, lo = sorted_nodes, sorted_nodes[first]
    keep = hi != lo
    return {"hi": hi[keep], "lo": lo[keep]}


def fingerprint_table(parts: list[dict]) -> dict:
    """One table sorted by node from parts {node, kind, w0..w3, thumb} (Ray refs or dicts)."""
    import ray

    parts = [ray.get(p) if isinstance(p, ray.ObjectRef) else p for p in parts]
    parts = [p for p in parts if len(p["node"])]
    if not parts:
        return {"node": np.empty(0, np.int64)}
    table = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    order = np.argsort(table["node"])
    return {k: v[order] for k, v in table.items()}


def _rows_of(table: dict, nodes: np.ndarray) -> np.ndarray:
    """Index of each node in the table, -1 when it has no media entry (text-only row)."""
    if len(table["node"]) == 0:
        return np.full(len(nodes), -1)
    pos = np.clip(np.searchsorted(table["node"], nodes), 0, len(table["node"]) - 1)
    return np.where(table["node"][pos] == nodes, pos, -1)


def _kinds(table: dict, rows: np.ndarray) -> np.ndarray:
    if len(table["node"]) == 0:
        return np.zeros(len(rows), np.int64)
    return np.where(rows >= 0, table["kind"][np.maximum(rows, 0)], 0)


def _close(table: dict, pm, pa, scale: float, config: MediaHashConfig) -> np.ndarray:
    """(members, anchors) matrix: media kinds agree and both fingerprint distances are small.

    Text-only (not in the table) matches text-only; kind -1 (unreadable) matches nothing.
    """
    km, ka = _kinds(table, pm), _kinds(table, pa)
    same = km[:, None] == ka[None, :]
    text_only = (km == 0)[:, None] & same
    media = same & (km > 0)[:, None]
    if not media.any():
        return text_only
    words = np.stack([table[f"w{k}"] for k in range(HASH_WORDS)], axis=1)
    bits = np.where(km == KIND_IMAGE, 64, 64 * min(config.frames, HASH_WORDS))[:, None]
    ham = hamming(words[pm][:, None, :], words[pa][None, :, :])
    pixels = table["thumb"].astype(np.int16)
    diff = np.abs(pixels[pm][:, None, :] - pixels[pa][None, :, :])
    colour = config.colour_size()
    thumb_diff, block_diff = diff[..., :colour].mean(axis=-1), diff[..., colour:].max(axis=-1)
    limit = np.where(km == KIND_IMAGE, config.max_thumb_image, config.max_thumb_video)[:, None]
    ok = (
        (ham <= config.max_phash * scale * bits)
        & (thumb_diff <= limit * scale)
        & (block_diff <= config.max_block * scale)
    )
    return text_only | (media & ok)


def verified_bucket_edges(
    group: dict, fingerprints: list, config: MediaHashConfig, cap: int = 64
) -> dict:
    """Edges between members of a bucket whose media are copies (see `_close`).

    The limits are the config's, scaled by a record's `limit` column when there is one (the
    dedup job allows copies for identical text, identical media for near-identical text).
    Buckets up to `cap` members compare all pairs; a larger bucket compares every member with
    its first `cap` members (identical media pile up in one bucket; this bounds the work).
    """
    table = fingerprint_table(fingerprints)
    shared = _shared(group["key"].astype(np.uint64))
    keys, nodes = group["key"].astype(np.uint64)[shared], group["node"].astype(np.int64)[shared]
    order, first = _buckets(keys, nodes)
    rows = _rows_of(table, nodes)
    limits = np.asarray(group["limit"])[shared] if "limit" in group else None
    bounds = np.append(np.unique(first), len(order))
    his, los = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end - start < 2:
            continue
        members = order[start:end]
        anchors = members[:cap]
        scale = float(limits[members[0]]) if limits is not None else 1.0
        for chunk in range(0, len(members), 256):
            part = members[chunk : chunk + 256]
            i, j = np.nonzero(_close(table, rows[part], rows[anchors], scale, config))
            a, b = nodes[part[i]], nodes[anchors[j]]
            his.append(np.maximum(a, b)[a != b])
            los.append(np.minimum(a, b)[a != b])
    return {"hi": np.concatenate(his), "lo": np.concatenate(los)}


def _split_records(batch: dict, partitions: int) -> list[dict]:
    """Records -> `partitions` pieces by a hash of the key."""
    part = partition_of(batch["key"], partitions)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(partitions + 1))
    return [
        {name: np.asarray(column)[order[lo:hi]] for name, column in batch.items()}
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _records_split(block: dict, record_fn, record_kwargs: dict, partitions: int) -> list[dict]:
    return _split_records(record_fn(block, **record_kwargs), partitions)


def _reduce_partition(edge_fn, fn_kwargs: dict, *pieces: dict) -> dict:
    """All records of one partition (one piece per block) -> its edges {hi, lo}."""
    group = {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}
    return edge_fn(group, **fn_kwargs)


def shuffle_to_edges(
    blocks: list,
    record_fn,
    edge_fn,
    partitions: int,
    record_kwargs: dict | None = None,
    edge_kwargs: dict | None = None,
) -> list:
    """A hash shuffle of LSH records into edges: refs of {hi, lo} arrays.

    `blocks` are refs of row batches (dicts of NumPy arrays). One Ray task per block makes
    its (key, node, ...) records with `record_fn(block, **record_kwargs)` and splits them by a
    hash of the key into `partitions` pieces; one task per partition turns its pieces into
    edges with `edge_fn(group, **edge_kwargs)`. Records exist only inside these tasks and
    move once through the object store (Ray Data's groupby samples, sorts and re-blocks the
    records: about 3x slower here at 33M records); the edges stay there for the union-find.
    """
    import ray

    partitions = max(2, partitions)  # num_returns=1 would hand back the list itself
    split = ray.remote(_records_split).options(num_returns=partitions)
    reduce = ray.remote(_reduce_partition)
    pieces = [split.remote(ref, record_fn, record_kwargs or {}, partitions) for ref in blocks]
    if not pieces:
        return []
    return [
        reduce.remote(edge_fn, edge_kwargs or {}, *[piece[p] for piece in pieces])
        for p in range(partitions)
    ]

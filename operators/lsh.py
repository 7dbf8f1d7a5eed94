"""LSH buckets to candidate edges with a Ray Data hash shuffle.

Records are (key, node) rows: one per (row, band) for MinHash bands and bit-sampling bands, one
per row for exact SHA1 keys. A hash of the key picks one of `partitions` groups; each group is
sorted by key in NumPy, and every bucket of equal keys becomes a star of edges to its smallest
node. Media buckets carry the perceptual hash of each member so an edge is kept only when the
two hashes are within the Hamming threshold (bit sampling has false collisions; MinHash band
collisions are the LSH candidates themselves, as `datasketch.MinHashLSH.query` returns them).
"""

from __future__ import annotations

import numpy as np

from operators.minhash import mix64
from operators.phash import HASH_WORDS, KIND_IMAGE, hamming

__all__ = ["bucket_edges", "partition_of", "shuffle_to_edges", "verified_bucket_edges"]


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


def bucket_edges(group: dict) -> dict:
    """Edges (member -> smallest node of its bucket) of one partition of (key, node) records."""
    keys, nodes = group["key"].astype(np.uint64), group["node"].astype(np.int64)
    order, first = _buckets(keys, nodes)
    sorted_nodes = nodes[order]
    hi, lo = sorted_nodes, sorted_nodes[first]
    keep = hi != lo
    return {"hi": hi[keep], "lo": lo[keep]}


def _close(words, kinds, members, anchors, max_distance: float, frames: int) -> np.ndarray:
    """(members, anchors) matrix: media kinds agree and hashes are within the threshold.

    Kind 0 (no media) matches kind 0; kind -1 (unreadable) matches nothing.
    """
    dist = hamming(words[members][:, None, :], words[anchors][None, :, :])
    bits = np.where(kinds[members] == KIND_IMAGE, 64, 64 * frames)[:, None]
    same_kind = kinds[members][:, None] == kinds[anchors][None, :]
    text_only = (kinds[members] == 0)[:, None] & same_kind
    return text_only | (same_kind & (kinds[members] > 0)[:, None] & (dist <= max_distance * bits))


def verified_bucket_edges(group: dict, max_distance: float, frames: int, cap: int = 64) -> dict:
    """Edges between members of a bucket whose media hashes are within a distance of the bits.

    The distance is `max_distance`, or a record's own `limit` column when there is one (the
    dedup job allows more media difference for identical text than for near-identical text).
    Buckets up to `cap` members compare all pairs; a larger bucket compares every member with
    its first `cap` members (identical media pile up in one bucket; this bounds the work).
    """
    keys, nodes = group["key"].astype(np.uint64), group["node"].astype(np.int64)
    words = np.stack([group[f"w{k}"] for k in range(HASH_WORDS)], axis=1).astype(np.uint64)
    kinds = group["kind"].astype(np.int64)
    order, first = _buckets(keys, nodes)
    bounds = np.append(np.unique(first), len(order))
    his, los = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end - start < 2:
            continue
        members = order[start:end]
        anchors = members[:cap]
        limit = float(group["limit"][members[0]]) if "limit" in group else max_distance
        i, j = np.nonzero(_close(words, kinds, members, anchors, limit, frames))
        a, b = nodes[members[i]], nodes[anchors[j]]
        his.append(np.maximum(a, b)[a != b])
        los.append(np.minimum(a, b)[a != b])
    return {"hi": np.concatenate(his), "lo": np.concatenate(los)}


def _with_partition(batch: dict, partitions: int) -> dict:
    return {**batch, "part": partition_of(batch["key"], partitions)}


def shuffle_to_edges(
    records,
    edge_fn,
    partitions: int,
    fn_kwargs: dict | None = None,
    strategy: str = "sort_shuffle_pull_based",
):
    """A Ray Data shuffle of (key, node, ...) records, by a hash of the key, into edges (hi, lo).

    `strategy` is a `ray.data.context.ShuffleStrategy` value for this dataset only; the
    task-based sort shuffle is the default because the actor-based hash shuffle reserved the
    CPUs of a 2-core machine and its workers aborted under load (Ray 2.60).
    """
    from ray.data.context import ShuffleStrategy

    keyed = records.map_batches(
        _with_partition, fn_kwargs={"partitions": partitions}, batch_format="numpy"
    )
    keyed.context.shuffle_strategy = ShuffleStrategy(strategy)
    return keyed.groupby("part", num_partitions=partitions).map_groups(
        edge_fn, fn_kwargs=fn_kwargs or {}, batch_format="numpy"
    )

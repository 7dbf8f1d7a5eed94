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

import numba
import numpy as np

from operators.minhash import mix64
from operators.phash import HASH_WORDS, KIND_IMAGE, MediaHashConfig, hamming

__all__ = [
    "WHY_EXACT",
    "WHY_NEAR",
    "WHY_SEMANTIC",
    "best_links",
    "bucket_edges",
    "bucket_pairs",
    "estimated_jaccard",
    "fingerprint_table",
    "partition_of",
    "shuffle_to_edges",
    "strongest_per_node",
    "text_bucket_edges",
    "verified_bucket_edges",
]

WHY_EXACT, WHY_NEAR, WHY_SEMANTIC = 0, 1, 2  # what an edge stands for (dup_reason)


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


def _close(table: dict, pm, pa, scale, config: MediaHashConfig) -> np.ndarray:
    """Per pair (pm[i], pa[i]): media kinds agree and the fingerprint distances are small.

    `scale` (one value or one per pair) multiplies the limits. Text-only (not in the table)
    matches text-only; kind -1 (unreadable) matches nothing.
    """
    km, ka = _kinds(table, pm), _kinds(table, pa)
    text_only = (km == 0) & (ka == 0)
    media = (km == ka) & (km > 0)
    if not media.any():
        return text_only
    words = np.stack([table[f"w{k}"] for k in range(HASH_WORDS)], axis=1)
    bits = np.where(km == KIND_IMAGE, 64, 64 * min(config.frames, HASH_WORDS))
    ham = hamming(words[pm], words[pa])
    pixels = table["thumb"]
    diff = np.abs(pixels[pm].astype(np.int16) - pixels[pa].astype(np.int16))
    colour = config.colour_size()
    thumb_diff, block_diff = diff[:, :colour].mean(axis=-1), diff[:, colour:].max(axis=-1)
    limit = np.where(km == KIND_IMAGE, config.max_thumb_image, config.max_thumb_video)
    ok = (
        (ham <= config.max_phash * scale * bits)
        & (thumb_diff <= limit * scale)
        & (block_diff <= config.max_block * scale)
    )
    return text_only | (media & ok)


@numba.njit(cache=True)
def _pair_positions(first: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (p, q), q < p, of sorted positions in one bucket, q among its first `cap`."""
    total = 0
    for p in range(len(first)):
        total += min(p - first[p], cap)
    later, earlier = np.empty(total, np.int64), np.empty(total, np.int64)
    k = 0
    for p in range(len(first)):
        for q in range(first[p], min(p, first[p] + cap)):
            later[k], earlier[k] = p, q
            k += 1
    return later, earlier


def bucket_pairs(keys: np.ndarray, nodes: np.ndarray, cap: int = 64):
    """Candidate pairs (i, j) (indices into keys/nodes) of records sharing a key.

    Every pair of a bucket up to `cap + 1` members; in a larger bucket every member is paired
    with the first `cap` (identical rows pile up in one bucket; this bounds the work). Only
    keys that repeat are sorted.
    """
    shared = np.flatnonzero(_shared(keys))
    order, first = _buckets(keys[shared], nodes[shared])
    later, earlier = _pair_positions(first, cap)
    return shared[order[later]], shared[order[earlier]]


def _star(i: np.ndarray, j: np.ndarray, nodes: np.ndarray) -> dict:
    a, b = nodes[i], nodes[j]
    return {"hi": np.maximum(a, b)[a != b], "lo": np.minimum(a, b)[a != b]}


def verified_bucket_edges(
    group: dict, fingerprints: list, config: MediaHashConfig, cap: int = 64
) -> dict:
    """Edges between members of a bucket whose media are copies (see `_close`).

    The limits are the config's, scaled by a record's `limit` column when there is one (the
    dedup job allows copies for identical text, identical media for near-identical text).
    Pairs are `bucket_pairs(..., cap)`.
    """
    table = fingerprint_table(fingerprints)
    keys, nodes = group["key"].astype(np.uint64), group["node"].astype(np.int64)
    i, j = bucket_pairs(keys, nodes, cap)
    scale = np.asarray(group["limit"])[i] if "limit" in group else 1.0
    ok = _close(table, _rows_of(table, nodes[i]), _rows_of(table, nodes[j]), scale, config)
    return _star(i[ok], j[ok], nodes)


@numba.njit(cache=True)
def _agreement(sig: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Share of equal signature positions of rows ra[i], rb[i] of `sig` (n, k)."""
    out = np.empty(len(ra), np.float32)
    k = sig.shape[1]
    for i in range(len(ra)):
        same = 0
        for c in range(k):
            same += sig[ra[i], c] == sig[rb[i], c]
        out[i] = same / k
    return out


def _signature_rows(blocks: list[dict], nodes: np.ndarray) -> np.ndarray:
    """The low signature bytes of `nodes` (sorted, unique) from blocks sorted by node."""
    width = blocks[0]["sig8"].shape[1] if blocks else 0
    out = np.zeros((len(nodes), width), np.uint8)
    for block in blocks:
        have = block["node"]
        if len(have) == 0:
            continue
        pos = np.clip(np.searchsorted(have, nodes), 0, len(have) - 1)
        hit = have[pos] == nodes
        out[hit] = block["sig8"][pos[hit]]
    return out


def estimated_jaccard(blocks: list[dict], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash estimate of the Jaccard similarity of node pairs (a[i], b[i]).

    Blocks hold `node` (sorted) and `sig8`, the low byte of each signature value (b-bit
    MinHash, Li and Koenig 2010): two bytes agree with probability J + (1 - J) / 256, so
    J = (agreement - 1/256) / (1 - 1/256), with the variance of the full signature's estimate
    to within 1%. A quarter of the memory of the 32-bit signature.
    """
    if len(a) == 0:
        return np.empty(0, np.float32)
    nodes, index = np.unique(np.concatenate([a, b]), return_inverse=True)
    table = _signature_rows(blocks, nodes)
    agree = _agreement(table, index[: len(a)], index[len(a) :])
    return np.maximum(0.0, (agree - 1 / 256) / (1 - 1 / 256)).astype(np.float32)


def _unique_edges(hi: np.ndarray, lo: np.ndarray, sim: np.ndarray, why: np.ndarray) -> dict:
    """One row per (hi, lo) pair, the strongest kept (a pair repeats over bands)."""
    order = np.lexsort((-sim, why, lo, hi))
    hi, lo, sim, why = hi[order], lo[order], sim[order], why[order]
    first = np.ones(len(hi), dtype=bool)
    first[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    return {"hi": hi[first], "lo": lo[first], "sim": sim[first], "why": why[first]}


def best_links(edges: dict) -> dict:
    """Per node of `edges`: its strongest neighbour {node, match, sim, why}.

    Strongest: the smallest `why` (exact before near before semantic), then the highest
    similarity. Edges without `sim` (unverified) carry NaN and `WHY_NEAR`. This is the
    evidence of the dedup audit: which row a removed row was matched with, and how closely.
    """
    hi, lo = np.asarray(edges["hi"], np.int64), np.asarray(edges["lo"], np.int64)
    sim = np.asarray(edges.get("sim", np.full(len(hi), np.nan)), np.float32)
    why = np.asarray(edges.get("why", np.full(len(hi), WHY_NEAR)), np.int8)
    links = {
        "node": np.concatenate([hi, lo]),
        "match": np.concatenate([lo, hi]),
        "sim": np.concatenate([sim, sim]),
        "why": np.concatenate([why, why]),
    }
    return strongest_per_node(links)


def strongest_per_node(links: dict) -> dict:
    """`links` reduced to one row per node (the strongest; see `best_links`), sorted by node."""
    sim = np.nan_to_num(links["sim"], nan=-1.0)
    order = np.lexsort((-sim, links["why"], links["node"]))
    node = links["node"][order]
    first = np.ones(len(node), dtype=bool)
    first[1:] = node[1:] != node[:-1]
    return {k: np.asarray(v)[order][first] for k, v in links.items()}


def text_bucket_edges(
    group: dict,
    signatures: list,
    threshold: float,
    fingerprints: list | None = None,
    media: MediaHashConfig | None = None,
    cap: int = 64,
) -> dict:
    """Verified text edges {hi, lo, sim, why} of one partition of (key, node, exact) records.

    LSH buckets only propose candidates: a pair sharing a MinHash band becomes an edge only
    when its estimated Jaccard similarity (`estimated_jaccard`) is at least `threshold`; a
    pair sharing an exact key (`exact` record) has identical normalized text, similarity 1.
    With `fingerprints`, the pair's media must also agree (`_close`, scaled by `limit`).
    `signatures` are refs of the row-key blocks (node sorted, sig8).
    """
    import ray

    keys, nodes = group["key"].astype(np.uint64), group["node"].astype(np.int64)
    i, j = bucket_pairs(keys, nodes, cap)
    exact = np.asarray(group["exact"])[i].astype(bool)
    sim = np.ones(len(i), np.float32)
    blocks = [ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref for ref in signatures]
    sim[~exact] = estimated_jaccard(blocks, nodes[i[~exact]], nodes[j[~exact]])
    ok = exact | (sim >= threshold)
    i, j, sim, exact = i[ok], j[ok], sim[ok], exact[ok]
    if fingerprints is not None:
        table = fingerprint_table(fingerprints)
        scale = np.asarray(group["limit"])[i]
        ok = _close(table, _rows_of(table, nodes[i]), _rows_of(table, nodes[j]), scale, media)
        i, j, sim, exact = i[ok], j[ok], sim[ok], exact[ok]
    a, b = nodes[i], nodes[j]
    diff = a != b
    why = np.where(exact, WHY_EXACT, WHY_NEAR).astype(np.int8)
    return _unique_edges(np.maximum(a, b)[diff], np.minimum(a, b)[diff], sim[diff], why[diff])


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

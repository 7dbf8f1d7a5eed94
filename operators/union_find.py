"""Connected components of a duplicate graph: a local union-find and a distributed one.

Nodes are int64 keys (any values, not dense). Every component is labelled by its smallest
node, so a caller that orders node keys by priority (ray_jobs/dedup.py puts the survivor policy
in the high bits) gets each component's survivor as its label.

Distributed version (Ray tasks, nothing on the driver but one flag per partition): edges are
object refs of (hi, lo) arrays with hi > lo. Each round sends every edge to the partitions
owning its two endpoints (a hash shuffle of map and reduce tasks), runs a union-find over
each partition's edges, and emits every node of a local component pointing at the
component's minimum: a star. Connectivity is kept (each edge lies inside one local component), and a
round changes nothing exactly when every node has one target and no target has a target of
its own, i.e. the edges are a star forest labelled by component minima. Duplicate clusters are
small, so this takes 2-4 rounds in practice.
"""

from __future__ import annotations

import numba
import numpy as np

from operators.minhash import mix64

__all__ = ["components_local", "connected_components", "star_edges"]


@numba.njit(cache=True)
def _find(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=True)
def _roots(pairs: np.ndarray, count: int) -> np.ndarray:
    """Union-find over index pairs (m, 2) of `count` sorted nodes; each node's smallest member."""
    parent = np.arange(count)
    for k in range(pairs.shape[0]):
        ru, rv = _find(parent, pairs[k, 0]), _find(parent, pairs[k, 1])
        if ru != rv:
            # Nodes are sorted, so the smaller index is the smaller key: keep it as root.
            parent[max(ru, rv)] = min(ru, rv)
    return np.array([_find(parent, i) for i in range(count)])


def components_local(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, roots): every node that appears in `edges` (m, 2) and its component minimum."""
    if len(edges) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    nodes, index = np.unique(edges.astype(np.int64), return_inverse=True)
    roots = _roots(index.reshape(-1, 2).astype(np.int64), len(nodes))
    return nodes, nodes[roots]


def star_edges(edges: np.ndarray) -> np.ndarray:
    """The star forest (node, root) with node > root that connects what `edges` connects."""
    nodes, roots = components_local(edges)
    keep = nodes != roots
    return np.stack([nodes[keep], roots[keep]], axis=1)


def _normalize(edges: np.ndarray) -> np.ndarray:
    """Edges as unique (hi, lo) rows with hi > lo (self loops dropped)."""
    if len(edges) == 0:
        return np.empty((0, 2), dtype=np.int64)
    hi, lo = edges.max(axis=1), edges.min(axis=1)
    pairs = np.stack([hi, lo], axis=1)[hi != lo]
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def _owner(nodes: np.ndarray, partitions: int, round_seed: int) -> np.ndarray:
    salted = nodes.astype(np.uint64) ^ np.uint64(round_seed * 0x9E3779B97F4A7C15 % (1 << 64))
    return (mix64(salted) % np.uint64(partitions)).astype(np.int64)


def _as_pairs(edges) -> np.ndarray:
    """(m, 2) int64 from an array or a Ray Data numpy batch {"hi": ..., "lo": ...}."""
    if isinstance(edges, dict):
        return np.stack([edges["hi"], edges["lo"]], axis=1).astype(np.int64)
    return np.asarray(edges, dtype=np.int64).reshape(-1, 2)


def _split(edges, partitions: int, round_seed: int) -> list[np.ndarray]:
    """Send each edge to the partitions owning its endpoints (one copy when the same)."""
    edges = _as_pairs(edges)
    if len(edges) == 0:
        return [edges] * partitions
    p_hi = _owner(edges[:, 0], partitions, round_seed)
    p_lo = _owner(edges[:, 1], partitions, round_seed)
    return [edges[(p_hi == p) | (p_lo == p)] for p in range(partitions)]


def _contract(*chunks: np.ndarray) -> tuple[np.ndarray, bool]:
    """One partition: its edges -> local stars, and whether that changed its edge set."""
    given = _normalize(np.concatenate(chunks))
    stars = _normalize(star_edges(given))
    return stars, len(stars) != len(given) or not np.array_equal(stars, given)


def _unique_by_node(*chunks: np.ndarray) -> np.ndarray:
    """A node reached from two partitions appears twice in a star forest: keep one row."""
    edges = _normalize(np.concatenate(chunks))
    _, first = np.unique(edges[:, 0], return_index=True)
    return edges[first]


def connected_components(edge_refs: list, partitions: int = 8, max_rounds: int = 30) -> list:
    """Star forest (node, component minimum) of edges given as Ray object refs of (m, 2) arrays.

    Each round is a shuffle of Ray tasks: `partitions` map tasks split the edges by endpoint
    owner, `partitions` reduce tasks contract them; only one changed flag per partition comes
    back to the driver. Returns refs of (k, 2) arrays, each node once; raises when the rounds
    do not converge within `max_rounds`.
    """
    import ray

    partitions = max(2, partitions)  # num_returns=1 would hand back the list itself
    split = ray.remote(_split).options(num_returns=partitions)
    contract = ray.remote(_contract).options(num_returns=2)
    current = edge_refs
    for round_index in range(max_rounds):
        pieces = [split.remote(ref, partitions, round_index) for ref in current]
        results = [contract.remote(*[piece[p] for piece in pieces]) for p in range(partitions)]
        current = [stars for stars, _ in results]
        if not any(ray.get([changed for _, changed in results])):
            # Route each star edge by its node, so each node lands in one partition.
            owner = ray.remote(_split_by_node).options(num_returns=partitions)
            routed = [owner.remote(ref, partitions) for ref in current]
            unique = ray.remote(_unique_by_node)
            return [unique.remote(*[piece[p] for piece in routed]) for p in range(partitions)]
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")


def _split_by_node(edges: np.ndarray, partitions: int) -> list[np.ndarray]:
    if len(edges) == 0:
        return [edges] * partitions
    owner = _owner(edges[:, 0], partitions, -1)
    return [edges[owner == p] for p in range(partitions)]

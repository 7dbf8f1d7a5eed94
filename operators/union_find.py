"""Connected components of a duplicate graph: a local union-find and a distributed one.

Nodes are int64 keys (any values, not dense). Every component is labelled by its smallest
node, so a caller that orders node keys by priority (ray_jobs/dedup.py puts the survivor policy
in the high bits) gets each component's survivor as its label.

Distributed version (Ray Data, nothing on the driver but counts): edges live as a dataset of
(hi, lo) pairs with hi > lo. Each round sends every edge to the partitions owning its two
endpoints (a hash shuffle with `groupby(...).map_groups`), runs a union-find over each
partition's edges, and emits every node of a local component pointing at the component's
minimum: a star. Connectivity is kept (each edge lies inside one local component), and a
round changes nothing exactly when every node has one target and no target has a target of
its own, i.e. the edges are a star forest labelled by component minima. Duplicate clusters are
small, so this takes 2-4 rounds in practice.
"""

from __future__ import annotations

import numpy as np

from operators.minhash import mix64

__all__ = ["components_local", "connected_components", "star_edges"]


def _find(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def components_local(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, roots): every node that appears in `edges` (m, 2) and its component minimum."""
    if len(edges) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    nodes, index = np.unique(edges.astype(np.int64), return_inverse=True)
    index = index.reshape(-1, 2)
    parent = np.arange(len(nodes))
    for u, v in index.tolist():
        ru, rv = _find(parent, u), _find(parent, v)
        if ru != rv:
            # Nodes are sorted, so the smaller index is the smaller key: keep it as root.
            parent[max(ru, rv)] = min(ru, rv)
    roots = np.array([_find(parent, i) for i in range(len(nodes))], dtype=np.int64)
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


class _Scatter:
    """Send each edge to the partitions that own its endpoints (one copy if the same)."""

    def __init__(self, partitions: int, round_seed: int):
        self.partitions, self.round_seed = partitions, round_seed

    def __call__(self, batch: dict) -> dict:
        hi, lo = batch["hi"].astype(np.int64), batch["lo"].astype(np.int64)
        p_hi = _owner(hi, self.partitions, self.round_seed)
        p_lo = _owner(lo, self.partitions, self.round_seed)
        twice = p_hi != p_lo
        return {
            "hi": np.concatenate([hi, hi[twice]]),
            "lo": np.concatenate([lo, lo[twice]]),
            "part": np.concatenate([p_hi, p_lo[twice]]),
        }


def _contract(group: dict) -> dict:
    """One partition: its edges -> local stars, and whether that changed its edge set."""
    given = _normalize(np.stack([group["hi"], group["lo"]], axis=1).astype(np.int64))
    stars = _normalize(star_edges(given))
    changed = len(stars) != len(given) or not np.array_equal(stars, given)
    return {
        "hi": stars[:, 0],
        "lo": stars[:, 1],
        "changed": np.full(len(stars), changed, dtype=bool),
    }


def _dedupe(batch: dict) -> dict:
    pairs = _normalize(np.stack([batch["hi"], batch["lo"]], axis=1).astype(np.int64))
    return {"hi": pairs[:, 0], "lo": pairs[:, 1]}


def connected_components(edges, partitions: int = 8, max_rounds: int = 30):
    """Star forest (hi -> lo = component minimum) of an edge dataset with columns hi, lo.

    `edges` is a `ray.data.Dataset`; the result is a materialized Dataset with columns
    `hi` (a node) and `lo` (its component's minimum node), one row per non-minimum node.
    Rounds repeat until no partition changes (at most `max_rounds`, then it raises).
    """
    current = edges.select_columns(["hi", "lo"]).map_batches(_dedupe, batch_format="numpy")
    for round_index in range(max_rounds):
        scattered = current.map_batches(
            _Scatter, fn_constructor_args=(partitions, round_index), batch_format="numpy"
        )
        grouped = scattered.groupby("part", num_partitions=partitions)
        result = grouped.map_groups(_contract, batch_format="numpy").materialize()
        changed = result.sum("changed") if result.count() else 0
        current = result.select_columns(["hi", "lo"])
        if not changed:
            # A star forest; a node reached from two partitions appears twice: keep one row.
            unique = current.groupby("hi", num_partitions=partitions).min("lo")
            return unique.rename_columns({"min(lo)": "lo"}).materialize()
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")

"""Union-find: local against a brute-force BFS, distributed against local."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from operators.union_find import components_local, connected_components, star_edges


def _bfs_components(edges: np.ndarray) -> dict[int, int]:
    graph = defaultdict(set)
    for u, v in edges.tolist():
        graph[u].add(v)
        graph[v].add(u)
    label: dict[int, int] = {}
    for start in sorted(graph):
        if start in label:
            continue
        seen, stack = {start}, [start]
        while stack:
            for nxt in graph[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        for node in seen:
            label[node] = min(seen)
    return label


def _random_graph(seed: int, nodes: int = 400, edges: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = rng.choice(1 << 50, nodes, replace=False).astype(np.int64)
    pairs = rng.integers(0, nodes, (edges, 2))
    chain = np.stack([np.arange(30), np.arange(1, 31)], axis=1)  # a long path, worst case
    return ids[np.concatenate([pairs, chain])]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_local_components_equal_bfs(seed):
    edges = _random_graph(seed)
    nodes, roots = components_local(edges)
    assert dict(zip(nodes.tolist(), roots.tolist(), strict=True)) == _bfs_components(edges)
    stars = star_edges(edges)
    assert np.all(stars[:, 0] > stars[:, 1])


@pytest.mark.parametrize("partitions", [2, 5])
def test_distributed_components_equal_local(ray_session, partitions):
    edges = _random_graph(7, nodes=2000, edges=1500)
    refs = [ray_session.put(chunk) for chunk in np.array_split(edges, 4)]
    stars = np.concatenate(ray_session.get(connected_components(refs, partitions)))
    nodes, roots = components_local(edges)
    expected = {n: r for n, r in zip(nodes.tolist(), roots.tolist(), strict=True) if n != r}
    assert len(stars) == len(expected)  # each node exactly once
    assert dict(zip(stars[:, 0].tolist(), stars[:, 1].tolist(), strict=True)) == expected

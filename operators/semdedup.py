"""Semantic near-duplicates: SemDeDup's clustering and in-cluster cosine, as dedup edges.

SemDeDup (Abbas et al. 2023, "SemDeDup: Data-efficient learning at web-scale through semantic
deduplication"; NeMo Curator ships it) finds rows that say the same thing in other words,
which shingle overlap (MinHash) cannot see: embed every row, k-means the embeddings, and
within each cluster call a pair a duplicate when its cosine similarity is at least
`threshold` (SemDeDup's 1 - eps). Clustering only bounds the pairwise work: two rows in
different clusters are never compared.

Here a row's vector is its text embedding (operators/embeddings.py, L2-normalized), joined
with its visual embedding when the input has one (both halves normalized, then the whole, so
text and picture weigh equally and the cosine is the mean of the two cosines). k-means is
faiss's, fit on a sample; the in-cluster pairs come out as edges {hi, lo, sim, why} of the
same union-find as MinHash (ray_jobs/dedup.py), `why` = WHY_SEMANTIC, so a row merged only by
them gets `dup_reason` `semantic`. The records are (cluster id, node) rows hash-shuffled like
LSH buckets (operators/lsh.py: shuffle_to_edges); each partition compares the members of its
clusters by matrix products of at most `chunk` rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operators.lsh import WHY_SEMANTIC, fingerprint_table, media_agree

__all__ = [
    "SemanticConfig",
    "cluster_records",
    "fit_centroids",
    "joint_vectors",
    "semantic_bucket_edges",
]


@dataclass(frozen=True)
class SemanticConfig:
    """Semantic near-duplicate settings (help on each field)."""

    enabled: bool = False  # add SemDeDup edges beside MinHash
    threshold: float = 0.95  # cosine similarity at or above which a pair is a duplicate
    rows_per_cluster: int = 1000  # k-means k = rows / this (at least 1)
    sample: int = 100_000  # rows the k-means is fit on
    niter: int = 20  # k-means iterations
    seed: int = 0
    model_path: str | None = None  # sentence model when the input has no text_embedding
    text_column: str = "text_embedding"
    visual_column: str = "visual_embedding"  # used when the input has it


def _normalized(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1)).astype(np.float32)


def joint_vectors(text: np.ndarray, visual: np.ndarray | None, has_visual) -> np.ndarray:
    """Text vectors, joined with the visual ones where a row has one (equal weights).

    A row without a visual embedding (text-only, or unreadable media) keeps its text vector
    and zeros in the visual half; against a row with one its cosine is at most sqrt(1/2) of
    the text cosine (< 0.71), so above such a threshold text-only rows match text-only rows,
    the rule MinHash follows.
    """
    text = _normalized(np.asarray(text, np.float32))
    if visual is None:
        return text
    visual = np.where(np.asarray(has_visual)[:, None], _normalized(visual), 0)
    scale = np.where(np.asarray(has_visual), np.sqrt(0.5), 1.0)[:, None]
    return np.concatenate([text * scale, visual * scale], axis=1).astype(np.float32)


def fit_centroids(blocks: list, config: SemanticConfig, rows: int) -> np.ndarray:
    """faiss k-means centroids (k, d) on a sample of the vectors in `blocks` (refs or dicts)."""
    import faiss
    import ray

    blocks = [ray.get(b) if isinstance(b, ray.ObjectRef) else b for b in blocks]
    vectors = np.concatenate([b["vec"] for b in blocks if len(b["vec"])])
    k = max(1, rows // config.rows_per_cluster)
    rng = np.random.default_rng(config.seed)
    if len(vectors) > config.sample:
        vectors = vectors[rng.choice(len(vectors), config.sample, replace=False)]
    k = min(k, len(vectors))
    if k == 1:
        return vectors.mean(axis=0, keepdims=True)
    kmeans = faiss.Kmeans(
        vectors.shape[1], k, niter=config.niter, seed=config.seed, spherical=True, verbose=False
    )
    kmeans.train(np.ascontiguousarray(vectors))
    return kmeans.centroids


def cluster_records(block: dict, centroids: np.ndarray) -> dict:
    """(key = nearest centroid, node) of every row of a block (the records to shuffle)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, np.float32))
    if len(block["vec"]) == 0:
        return {"key": np.empty(0, np.uint64), "node": np.empty(0, np.int64)}
    _, nearest = index.search(np.ascontiguousarray(block["vec"], np.float32), 1)
    return {"key": nearest[:, 0].astype(np.uint64), "node": np.asarray(block["node"], np.int64)}


def _vectors_of(blocks: list[dict], nodes: np.ndarray) -> np.ndarray:
    """Rows of `nodes` from blocks {node (sorted), vec}."""
    out = np.zeros((len(nodes), blocks[0]["vec"].shape[1]), np.float32)
    for block in blocks:
        have = block["node"]
        if len(have) == 0:
            continue
        pos = np.clip(np.searchsorted(have, nodes), 0, len(have) - 1)
        hit = have[pos] == nodes
        out[hit] = block["vec"][pos[hit]]
    return out


def _cluster_pairs(vectors: np.ndarray, threshold: float, chunk: int):
    """(i, j, cosine) of the pairs i > j of one cluster with cosine >= threshold."""
    out_i, out_j, out_s = [], [], []
    for start in range(0, len(vectors), chunk):
        sims = vectors[start : start + chunk] @ vectors[: start + chunk].T
        i, j = np.nonzero(sims >= threshold)
        i = i + start
        keep = i > j
        out_i.append(i[keep])
        out_j.append(j[keep])
        out_s.append(sims[i[keep] - start, j[keep]])
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)


def semantic_bucket_edges(
    group: dict,
    vectors: list,
    threshold: float,
    fingerprints: list | None = None,
    media=None,
    media_scale: float = 0.0,
    chunk: int = 2048,
) -> dict:
    """Edges {hi, lo, sim, why} between members of a k-means cluster with cosine >= threshold.

    With `fingerprints`, the two rows' media must also agree (operators/lsh.py `media_agree` at
    `media_scale`: 0 = the same media, as for near-identical text).
    """
    import ray

    blocks = [ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref for ref in vectors]
    keys, nodes = group["key"].astype(np.uint64), group["node"].astype(np.int64)
    his, los, sims = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.float32)]
    order = np.lexsort((nodes, keys))
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    for members in np.split(order, bounds):
        if len(members) < 2:
            continue
        members_nodes = nodes[members]
        i, j, s = _cluster_pairs(_vectors_of(blocks, members_nodes), threshold, chunk)
        a, b = members_nodes[i], members_nodes[j]
        his.append(np.maximum(a, b))
        los.append(np.minimum(a, b))
        sims.append(s.astype(np.float32))
    hi, lo, sim = np.concatenate(his), np.concatenate(los), np.concatenate(sims)
    if fingerprints is not None and len(hi):
        table = fingerprint_table(fingerprints)
        ok = media_agree(table, hi, lo, media_scale, media)
        hi, lo, sim = hi[ok], lo[ok], sim[ok]
    return {"hi": hi, "lo": lo, "sim": sim, "why": np.full(len(hi), WHY_SEMANTIC, np.int8)}

"""The semantic step of `mmcurate dedup`: SemDeDup edges (operators/semdedup.py) over a pool.

1. Vectors: an actor per worker reads each pool shard with its dedup key file (node keys in
   row order), takes the shard's `text_embedding` column, or embeds the conversations with
   the sentence model (operators/embeddings.py) when the input has none, joins the
   `visual_embedding` when there is one, and hands back {node, vec} sorted by node.
2. k-means (faiss) on a sample of the vectors, in one Ray task.
3. (nearest centroid, node) records hash-shuffled to partitions (operators/lsh.py), where the
   members of each cluster are compared by cosine: edges with `why` = semantic.
"""

from __future__ import annotations

import numpy as np

from operators import storage
from operators.batches import sample_text
from operators.semdedup import (
    SemanticConfig,
    cluster_records,
    fit_centroids,
    joint_vectors,
    semantic_bucket_edges,
)

__all__ = ["semantic_edges"]


class _ShardVectors:
    """Ray Data actor: one pool shard -> {node (sorted), vec} (embeds text when needed)."""

    def __init__(self, config: SemanticConfig, keys_dir: str):
        self.config, self.keys_dir, self._embedder = config, keys_dir, None

    def _text(self, table) -> np.ndarray:
        if self.config.text_column in table.column_names:
            return np.stack(table.column(self.config.text_column).to_numpy(zero_copy_only=False))
        if self._embedder is None:
            from operators.embeddings import TextEmbedConfig, TextEmbedder

            self._embedder = TextEmbedder(TextEmbedConfig(self.config.model_path))
        return self._embedder.encode([sample_text(m) for m in table.column("messages").to_pylist()])

    def __call__(self, batch: dict) -> dict:
        import os

        path = str(batch["path"][0])
        table = storage.read_parquet(path)
        keys = storage.read_parquet(storage.join(self.keys_dir, os.path.basename(path)))
        nodes = keys.column("node").to_numpy()
        visual, has_visual = None, None
        if self.config.visual_column in table.column_names:
            column = table.column(self.config.visual_column)
            has_visual = column.is_valid().to_numpy(zero_copy_only=False)
            width = column.type.list_size
            visual = (
                np.stack(
                    [
                        np.zeros(width, np.float32) if v is None else np.asarray(v, np.float32)
                        for v in column.to_pylist()
                    ]
                )
                if len(column)
                else np.zeros((0, width), np.float32)
            )
        vec = joint_vectors(self._text(table), visual, has_visual)
        order = np.argsort(nodes)
        return {"node": nodes[order], "vec": vec[order]}


def semantic_edges(
    shard_items,
    keys_dir: str,
    rows: int,
    config: SemanticConfig,
    partitions: int,
    fingerprints: list | None = None,
    media=None,
    media_scale: float = 0.0,
) -> list:
    """Refs of semantic edge arrays {hi, lo, sim, why} of the pool (see the module doc)."""
    import ray

    from operators.lsh import shuffle_to_edges

    vectors = shard_items.map_batches(
        _ShardVectors,
        fn_constructor_args=(config, keys_dir),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2),
    ).to_numpy_refs()
    centroids = ray.get(ray.remote(fit_centroids).remote(vectors, config, rows))
    edge_kwargs = {"vectors": vectors, "threshold": config.threshold}
    if fingerprints is not None:
        edge_kwargs.update(fingerprints=fingerprints, media=media, media_scale=media_scale)
    return shuffle_to_edges(
        vectors,
        cluster_records,
        semantic_bucket_edges,
        partitions,
        {"centroids": centroids},
        edge_kwargs,
    )

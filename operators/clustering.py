"""Style clustering for coverage: faiss k-means fit on a sample, assigned row by row.

GDO (Wu & Zhao 2026, "Goal-Driven Data Optimization") measures coverage with k-means over a
per-sample feature: each sample's distance to its centroid (`cluster_dist`) and how rare its
cluster is (`cluster_size`); selection favours rare clusters and spreads the budget over
them. The feature here is the L2-normalized text embedding, optionally concatenated with
GDO's descriptor block: a 16-bin hashed bag of words of the conversation, RGB mean/std,
temporal_loss_gap, motion, frame_div, ppl and vds (the columns a score stage wrote; absent
columns or nulls count as the sample mean). The block is standardized with the training
sample's mean and std and weighted so that its total variance is `gdo_weight**2` next to the
unit-norm embedding.

`fit_kmeans` trains faiss k-means (`faiss.Kmeans`; on GPU with `gpu=True` and faiss-gpu) on a
sample; `ClusterAssigner` is the Ray Data operator for the distributed assignment pass
(nearest centroid by L2, exact `IndexFlatL2`); `cluster_sizes_column` adds the counts.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from operators import storage
from operators.batches import (
    as_table,
    like_input,
    messages_column,
    sample_text,
    set_column,
    vectors_of,
)

__all__ = [
    "BOW_BINS",
    "GDO_COLUMNS",
    "ClusterAssigner",
    "ClusterConfig",
    "KMeansModel",
    "cluster_features",
    "cluster_sizes_column",
    "fit_kmeans",
    "gdo_block",
    "hashed_bow",
]

BOW_BINS = 16
# descriptor column -> its width (rgb_mean / rgb_std are 3-element lists)
GDO_COLUMNS = {
    "rgb_mean": 3,
    "rgb_std": 3,
    "temporal_loss_gap": 1,
    "motion": 1,
    "frame_div": 1,
    "ppl": 1,
    "vds": 1,
}


@dataclass(frozen=True)
class ClusterConfig:
    """k-means settings. GDO uses k = 4096 on ~1M rows; the default suits 10k-100k rows."""

    k: int = 64  # clusters (capped at the sample size)
    sample_size: int = 100_000  # rows the centroids are trained on
    niter: int = 25  # k-means iterations
    nredo: int = 3  # k-means restarts; the run with the lowest objective is kept
    seed: int = 0
    embedding_column: str = "text_embedding"
    gdo_features: bool = False  # append GDO's descriptor block to the embedding
    gdo_weight: float = 1.0  # total standard deviation of the block vs the unit embedding
    gpu: bool = False  # faiss GPU k-means (needs the faiss-gpu build)


@dataclass(frozen=True)
class KMeansModel:
    """Trained centroids plus the GDO block's standardization, enough to assign any row."""

    centroids: np.ndarray  # (k, dim) float32
    block_mean: np.ndarray  # (block,) float64; empty without GDO features
    block_std: np.ndarray
    config: ClusterConfig

    def save(self, directory: str) -> None:
        """centroids.npy plus model.json (config and standardization), no pickles; the
        directory may be an object-store URI."""
        buffer = io.BytesIO()
        np.save(buffer, self.centroids)
        storage.write_bytes(storage.join(directory, "centroids.npy"), buffer.getvalue())
        meta = {
            "config": asdict(self.config),
            "block_mean": self.block_mean.tolist(),
            "block_std": self.block_std.tolist(),
        }
        storage.write_text(storage.join(directory, "model.json"), json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: str) -> KMeansModel:
        meta = json.loads(storage.read_text(storage.join(directory, "model.json")))
        data = io.BytesIO(storage.read_bytes(storage.join(directory, "centroids.npy")))
        centroids = np.load(data, allow_pickle=False)
        return cls(
            centroids,
            np.asarray(meta["block_mean"]),
            np.asarray(meta["block_std"]),
            ClusterConfig(**meta["config"]),
        )


def hashed_bow(texts: list[str], bins: int = BOW_BINS) -> np.ndarray:
    """(n, bins) word counts hashed into buckets (CRC32 of the lowercased word), L1-normed."""
    out = np.zeros((len(texts), bins), np.float64)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, zlib.crc32(word.strip(".,;:!?\"'()").encode()) % bins] += 1
    return out / np.maximum(out.sum(1, keepdims=True), 1)


def gdo_block(table: pa.Table) -> np.ndarray:
    """(n, 16 + 11) raw GDO descriptor block; NaN where a column is absent or null."""
    parts = [hashed_bow([sample_text(m) for m in messages_column(table)])]
    for name, width in GDO_COLUMNS.items():
        values = np.full((table.num_rows, width), np.nan)
        if name in table.column_names:
            rows = table.column(name).to_pylist()
            for i, value in enumerate(rows):
                if value is not None:
                    values[i] = np.asarray(value, np.float64).reshape(-1)[:width]
        parts.append(values)
    return np.concatenate(parts, axis=1)


def _block_features(raw: np.ndarray, mean: np.ndarray, std: np.ndarray, weight: float):
    """Standardize, fill NaN with 0 (the mean), and scale to total std `weight`."""
    z = np.nan_to_num((raw - mean) / std, nan=0.0)
    return z * (weight / np.sqrt(raw.shape[1]))


def cluster_features(table: pa.Table, model: KMeansModel) -> tuple[np.ndarray, np.ndarray]:
    """((n, dim) float32 features, (n,) valid) for rows of `table` under `model`'s settings."""
    config = model.config
    vectors, valid = vectors_of(table.column(config.embedding_column))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    if config.gdo_features:
        raw = gdo_block(table)
        block = _block_features(raw, model.block_mean, model.block_std, config.gdo_weight)
        vectors = np.concatenate([vectors, block], axis=1)
    return np.ascontiguousarray(vectors, np.float32), valid


def _column_stats(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std over the finite values; (0, 1) for empty or constant columns."""
    finite = np.isfinite(raw)
    count = finite.sum(0)
    filled = np.where(finite, raw, 0.0)
    mean = filled.sum(0) / np.maximum(count, 1)
    var = (np.where(finite, raw - mean, 0.0) ** 2).sum(0) / np.maximum(count, 1)
    std = np.sqrt(var)
    return mean, np.where(std > 1e-12, std, 1.0)


def fit_kmeans(sample: pa.Table, config: ClusterConfig = ClusterConfig()) -> KMeansModel:
    """Train faiss k-means on the sample's features (rows with a null embedding skipped).

    The sample is sorted by id first, so the same rows give the same centroids whatever
    order a distributed read delivered them in.
    """
    import faiss

    if "id" in sample.column_names:
        sample = sample.sort_by("id")
    width = BOW_BINS + sum(GDO_COLUMNS.values()) if config.gdo_features else 0
    mean, std = np.zeros(width), np.ones(width)
    if config.gdo_features:
        mean, std = _column_stats(gdo_block(sample))
    model = KMeansModel(np.zeros((0, 0), np.float32), mean, std, config)
    features, valid = cluster_features(sample, model)
    features = features[valid]
    if len(features) == 0:
        raise ValueError("no rows with an embedding to train k-means on")
    k = min(config.k, len(features))
    kmeans = faiss.Kmeans(
        features.shape[1],
        k,
        niter=config.niter,
        nredo=config.nredo,
        seed=config.seed,
        gpu=config.gpu,
        verbose=False,
        max_points_per_centroid=max(256, len(features) // k + 1),
    )
    kmeans.train(features)
    return KMeansModel(np.asarray(kmeans.centroids, np.float32), mean, std, config)


class ClusterAssigner:
    """Ray Data operator: nearest centroid per row -> `cluster` (int32), `cluster_dist` (L2)."""

    def __init__(self, model: KMeansModel):
        import faiss

        self.model = model
        self.index = faiss.IndexFlatL2(model.centroids.shape[1])
        self.index.add(model.centroids)

    def __call__(self, batch: pa.Table | dict) -> pa.Table | dict:
        table = as_table(batch)
        features, valid = cluster_features(table, self.model)
        cluster = np.full(table.num_rows, -1, np.int64)
        dist = np.zeros(table.num_rows, np.float32)
        if valid.any():
            squared, nearest = self.index.search(features[valid], 1)
            cluster[valid] = nearest[:, 0]
            dist[valid] = np.sqrt(np.maximum(squared[:, 0], 0))
        invalid = ~valid
        table = set_column(table, "cluster", pa.array(cluster, pa.int32(), mask=invalid))
        table = set_column(table, "cluster_dist", pa.array(dist, pa.float32(), mask=invalid))
        return like_input(batch, table)


def cluster_sizes_column(table: pa.Table, sizes: np.ndarray) -> pa.Table:
    """Add `cluster_size` (rows in the row's cluster; null where `cluster` is null)."""
    cluster = table.column("cluster").combine_chunks()
    valid = np.asarray(cluster.is_valid().to_numpy(zero_copy_only=False), bool)
    index = np.asarray(cluster.fill_null(0).to_numpy(), np.int64)
    values = np.where(valid, sizes[index], 0).astype(np.int64)
    return set_column(table, "cluster_size", pa.array(values, pa.int64(), mask=~valid))

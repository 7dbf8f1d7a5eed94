"""`mmcurate cluster --run DIR`: k-means style clusters of the scored pool -> `DIR/clusters/`.

Reads `DIR/scored/` Parquet (or another stage folder with `--input`), keeps the compact columns
it needs (id, `text_embedding`, the GDO descriptors), trains faiss k-means on a random sample
(`operators/clustering.py`), assigns every row in a distributed Ray Data pass, counts the
rows per cluster and writes `DIR/clusters/` (Parquet: id, cluster, cluster_dist,
cluster_size), the model (centroids.npy, model.json) and `_SUCCESS` with the counts. When the
input has no `text_embedding` column, the job embeds the conversations first (actor pool).
Output is written to a temporary folder and renamed; a rerun of a complete stage is a no-op.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pyarrow as pa

from operators import storage
from operators.batches import map_actor_pool
from operators.clustering import (
    GDO_COLUMNS,
    ClusterAssigner,
    ClusterConfig,
    KMeansModel,
    cluster_sizes_column,
    fit_kmeans,
)
from ray_jobs.rundir import ensure_ray, is_complete, mark_complete, read_counts, stage_line

__all__ = ["ClusterJobConfig", "cluster", "load_clusters", "main"]


@dataclass(frozen=True)
class ClusterJobConfig:
    """The cluster stage: where to read and write, and the k-means settings."""

    run: str  # the run directory
    input: str = "scored"  # stage folder under the run to read (pool rows + descriptors)
    kmeans: ClusterConfig = ClusterConfig()
    text_model: str | None = None  # sentence model when the input lacks text_embedding
    actors: int = 2  # max actors for the embedding and assignment passes


class _AddSizes:
    """Ray Data task: `cluster_size` from the global per-cluster counts."""

    def __init__(self, sizes: np.ndarray):
        self.sizes = sizes

    def __call__(self, table: pa.Table) -> pa.Table:
        return cluster_sizes_column(table, self.sizes)


def _compact(config: ClusterJobConfig):
    """The input as a dataset of the columns clustering needs (embedding computed if absent)."""
    import ray

    from operators.embeddings import TextEmbedConfig, TextEmbedder

    path = storage.join(config.run, config.input)
    ds = ray.data.read_parquet(path, file_extensions=["parquet"])
    names = ds.schema().names
    column = config.kmeans.embedding_column
    wanted = ["id", column] + (list(GDO_COLUMNS) if config.kmeans.gdo_features else [])
    needs_text = column not in names or config.kmeans.gdo_features
    keep = [c for c in wanted if c in names] + (["messages"] if needs_text else [])
    ds = ds.select_columns(keep)
    embedded = column in names
    if not embedded and column != "text_embedding":
        raise ValueError(
            f"{path} has no {column!r} column to cluster on (for visual_embedding set "
            "score.visual_embedding: true); only text_embedding is computed here"
        )
    if not embedded:
        embed = TextEmbedConfig(config.text_model, column=column)
        ds = map_actor_pool(ds, TextEmbedder, (embed,), 256, (1, config.actors))
        ds = ds.materialize()  # embed once: both the sample and the assignment read it
    return ds, embedded


def _sample(ds, config: ClusterConfig, total: int) -> pa.Table:
    """A seeded random sample of about `config.sample_size` rows, as one Arrow table."""
    fraction = min(1.0, 1.2 * config.sample_size / max(total, 1))
    sample = ds if fraction >= 1.0 else ds.random_sample(fraction, seed=config.seed)
    tables = list(sample.iter_batches(batch_format="pyarrow", batch_size=4096))
    table = pa.concat_tables(tables) if tables else pa.table({})
    return table.sort_by("id").slice(0, config.sample_size) if table.num_rows else table


def cluster(config: ClusterJobConfig) -> dict:
    """Run the cluster stage; returns its counts."""
    out = storage.join(config.run, "clusters")
    if is_complete(out):
        return read_counts(out)
    ensure_ray()
    started = time.time()
    ds, embedded = _compact(config)
    total = ds.count()
    sample = _sample(ds, config.kmeans, total)
    model = fit_kmeans(sample, config.kmeans)
    assigned = map_actor_pool(ds, ClusterAssigner, (model,), 4096, (1, config.actors))
    assigned = assigned.select_columns(["id", "cluster", "cluster_dist"]).materialize()
    sizes = _sizes(assigned, len(model.centroids))
    tmp = storage.staging_dir(out)
    final = assigned.map_batches(_AddSizes, fn_constructor_args=(sizes,), batch_format="pyarrow")
    final.write_parquet(tmp)
    model.save(tmp)
    storage.commit_dir(tmp, out)
    counts = {
        "input": total,
        "clustered": int(sizes.sum()),
        "unclustered": total - int(sizes.sum()),
        "k": len(model.centroids),
        "nonempty_clusters": int((sizes > 0).sum()),
        "largest_cluster": int(sizes.max()),
        "sample_rows": sample.num_rows,
        "embedded_here": not embedded,
        "seconds": round(time.time() - started, 1),
    }
    mark_complete(out, counts)
    return counts


class _CountClusters:
    """Ray Data task: one row per block holding that block's per-cluster counts."""

    def __init__(self, k: int):
        self.k = k

    def __call__(self, table: pa.Table) -> pa.Table:
        cluster = table.column("cluster").drop_null().to_numpy()
        return pa.table({"counts": [np.bincount(cluster, minlength=self.k).tolist()]})


def _sizes(assigned, k: int) -> np.ndarray:
    """Rows per cluster: per-block counts in parallel, summed on the driver (k numbers each)."""
    blocks = assigned.map_batches(
        _CountClusters, fn_constructor_args=(k,), batch_format="pyarrow", batch_size=None
    )
    sizes = np.zeros(k, np.int64)
    for row in blocks.take_all():
        sizes += np.asarray(row["counts"], np.int64)
    return sizes


def load_clusters(run: str) -> tuple[pa.Table, KMeansModel]:
    """The clusters table and the model of a finished cluster stage."""
    out = storage.join(run, "clusters")
    files = [f for f in storage.listdir(out) if f.endswith(".parquet")]
    table = pa.concat_tables([storage.read_parquet(storage.join(out, f)) for f in files])
    return table, KMeansModel.load(out)


KMEANS_FLAGS = ("k", "sample_size", "niter", "nredo", "seed", "gdo_weight", "gpu")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmcurate cluster",
        description=__doc__ + "\nThe settings are the run's cluster stage (RUN/config.yaml or "
        "--recipe) when it has one, else the defaults; the flags given override them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--recipe", default=None, help="recipe file (default RUN/config.yaml)")
    parser.add_argument("--input", default=None, help="stage folder to read (default scored)")
    parser.add_argument("--k", type=int, default=None, help="number of clusters")
    parser.add_argument("--sample-size", type=int, default=None)
    parser.add_argument("--niter", type=int, default=None)
    parser.add_argument("--nredo", type=int, default=None, help="restarts")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--gdo", action="store_true", default=None, help="append GDO's descriptor block"
    )
    parser.add_argument("--gdo-weight", type=float, default=None)
    parser.add_argument("--gpu", action="store_true", default=None, help="faiss GPU k-means")
    parser.add_argument("--text-model", default=None, help="sentence model if no embeddings")
    parser.add_argument("--actors", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    config = _cli_config(_parser().parse_args(argv))
    print(f"[mmcurate] cluster config: {asdict(config)}")
    started = time.time()
    counts = cluster(config)
    print(stage_line("cluster", counts, started))
    return 0


def _cli_config(args) -> ClusterJobConfig:
    """The run's cluster stage configuration (or the defaults), then the flags given."""
    from ray_jobs.stage_recipe import stage_base
    from ray_jobs.stages import cluster_config

    config, given = stage_base("cluster", args, cluster_config, ClusterJobConfig(args.run))
    kmeans = {k: given[k] for k in KMEANS_FLAGS if k in given}
    if "gdo" in given:
        kmeans["gdo_features"] = True
    top = {k: given[k] for k in ("input", "text_model", "actors") if k in given}
    return replace(config, kmeans=replace(config.kmeans, **kmeans), **top)


if __name__ == "__main__":
    raise SystemExit(main())

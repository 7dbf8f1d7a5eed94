"""`mmcurate dedup`: exact and near-duplicate clusters of a pool, written to `RUN/dedup/`.

One global job over the pool's Parquet shards:
1. per shard (a Ray Data task): row keys. Each row gets a node key that orders rows by the
   survivor policy (longest answer first, then pool order), GDO's exact key
   SHA1(question|||answer), MinHash band keys of instruction + answer text (one compiled pass
   per shard, operators/minhash_kernel.py), and a fingerprint of its first media (pHash,
   colour thumbnail and grey block map, operators/phash.py). The key blocks stay in the
   object store.
2. media LSH: grid-LSH bands hash-shuffled by Ray tasks, candidate pairs verified on the
   fingerprint distances (a table of the media rows' fingerprints in the object store),
   components by the distributed union-find -> `media_cluster` (copies of one picture or
   video, whatever their text).
3. text LSH: exact keys and MinHash bands shuffled the same way; a candidate pair becomes an
   edge when the two rows' media are copies too (identical text) or the same media (near
   text); text-only rows match text-only rows. So one picture with two different questions
   stays two samples, and the same question on two different pictures too. Components
   again -> `dup_cluster`.
4. per shard: `dedup/part-NNNNN.parquet` with id, dup_cluster (the survivor's id), dup_keep,
   dup_reason (unique / survivor / exact / near), media_cluster; then `_SUCCESS` with counts
   (`_seconds.json` beside it: wall time per step).

Only compact per-row columns (keys, fingerprints) move; the driver holds the (node, root)
pairs of rows that have a duplicate, never the pool.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators import storage
from operators.formats.writers import write_parquet_atomic
from operators.lsh import (
    WHY_NEAR,
    WHY_SEMANTIC,
    best_links,
    bucket_edges,
    shuffle_to_edges,
    strongest_per_node,
    text_bucket_edges,
    verified_bucket_edges,
)
from operators.media import MediaError
from operators.minhash import MinHashConfig, band_keys, row_text_arrays, text_keys
from operators.phash import HASH_WORDS, MediaHashConfig, grid_keys, media_hash
from operators.semdedup import SemanticConfig
from operators.union_find import connected_components
from ray_jobs.rundir import ensure_ray, is_complete, mark_complete, read_counts, stage_line

__all__ = ["DEDUP_SCHEMA", "DedupConfig", "dedup", "main", "node_keys"]

DEDUP_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("dup_cluster", pa.string()),
        ("dup_keep", pa.bool_()),
        ("dup_reason", pa.string()),
        ("media_cluster", pa.string()),
        ("dup_match", pa.string()),
        ("dup_similarity", pa.float32()),
    ]
)
REASONS = ("unique", "survivor", "exact", "near", "semantic")
ROW_BITS = 40  # pool row index in the low bits of a node key (up to 1.1e12 rows)
MAX_PRIORITY = (1 << 23) - 1


@dataclass(frozen=True)
class DedupConfig:
    """The dedup job (help on each field)."""

    run: str  # run directory; output goes to RUN/dedup/
    input: str | None = None  # Parquet shards with ROW_SCHEMA; default RUN/pool
    text: MinHashConfig = field(default_factory=MinHashConfig)  # near-duplicate text
    media: MediaHashConfig = field(default_factory=MediaHashConfig)  # near-duplicate media
    exact: bool = True  # GDO's SHA1(question|||answer) duplicates
    near_text: bool = True  # MinHash-LSH text duplicates
    near_media: bool = True  # hash media, and require text duplicates to share media
    partitions: int = 8  # hash-shuffle partitions for buckets and union-find rounds
    semantic: SemanticConfig = field(default_factory=SemanticConfig)  # SemDeDup edges

    def input_dir(self) -> str:
        return self.input or storage.join(self.run, "pool")


def node_keys(answer_lengths: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Keys whose order is the survivor policy: longest answer first, then pool order.

    The union-find labels a component by its smallest key, so that label is the survivor.
    """
    priority = MAX_PRIORITY - np.minimum(answer_lengths.astype(np.int64), MAX_PRIORITY)
    return (priority << ROW_BITS) | rows.astype(np.int64)


def _shards(directory: str) -> list[tuple[str, int]]:
    names = [n for n in storage.listdir(directory) if n.endswith(".parquet")]
    out, offset = [], 0
    for name in names:
        path = storage.join(directory, name)
        out.append((path, offset))
        offset += storage.parquet_file(path).metadata.num_rows
    return out


def _media_of(table: pa.Table, config: DedupConfig) -> tuple[np.ndarray, ...]:
    """(kind, words, thumbs): kind 0 no media, 1 image, 2 video, -1 unreadable; pHash words
    (n, HASH_WORDS); pixel parts (n, thumb_size) uint8 (zeros without media)."""
    n = table.num_rows
    kinds, words = np.zeros(n, np.int8), np.zeros((n, HASH_WORDS), np.uint64)
    thumbs = np.zeros((n, config.media.thumb_size() if config.near_media else 0), np.uint8)
    if not config.near_media:
        return kinds, words, thumbs
    types, media = table.column("media_type").to_pylist(), table.column("media").to_pylist()
    for i, (media_type, paths) in enumerate(zip(types, media, strict=True)):
        if media_type not in ("image", "video") or not paths:
            continue
        try:
            kinds[i], words[i], thumbs[i] = media_hash(paths[0], media_type, config.media)
        except MediaError:
            kinds[i] = -1
    return kinds, words, thumbs


def _row_keys(batch: dict, config: DedupConfig) -> dict:
    """One shard -> per-row keys (the shard is read here so rows keep their pool index)."""
    path, offset, shard = str(batch["path"][0]), int(batch["offset"][0]), int(batch["shard"][0])
    table = storage.read_parquet(path, columns=["id", "media_type", "media", "messages", "answer"])
    questions, answers = row_text_arrays(table.column("messages"), table.column("answer"))
    n = table.num_rows
    answer_len = pc.utf8_length(answers).to_numpy().astype(np.int64)
    kinds, words, thumbs = _media_of(table, config)
    bands, rows = config.text.band_rows()
    sigs, exact = text_keys(questions, answers, config.text)
    blank = [pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(x)), 0) for x in (questions, answers)]
    out = {
        "shard": np.full(n, shard, np.int64),
        "node": node_keys(answer_len, np.arange(offset, offset + n)),
        "exact": exact,
        "has_text": ~pc.and_(*blank).to_numpy(zero_copy_only=False),
        "bands": band_keys(sigs, bands, rows),
        "kind": kinds,
    }
    for k in range(HASH_WORDS):
        out[f"w{k}"] = words[:, k]
    if config.near_media:
        out["thumb"] = thumbs
    if config.text.verify:
        out["sig8"] = sigs.astype(np.uint8)  # low bytes: b-bit MinHash for verification
    compact = {k: out[k] for k in ("node", "exact", "kind")}
    compact["id"] = table.column("id")
    name = os.path.basename(path)
    write_parquet_atomic(pa.table(compact), storage.join(config.run, "dedup", "_keys", name))
    order = np.argsort(out["node"])  # sorted by node: verification looks signatures up
    return {k: v[order] for k, v in out.items()}


def _media_records(batch: dict, config: DedupConfig) -> dict:
    """(key, node) per grid-LSH band of every row with readable media."""
    hashed = batch["kind"] > 0
    keys = grid_keys(batch["kind"][hashed], batch["thumb"][hashed], config.media)  # (m, bands)
    return {"key": keys.ravel(), "node": np.repeat(batch["node"][hashed], keys.shape[1])}


def _fingerprint_part(batch: dict) -> dict:
    """The media rows of a block: node, kind, pHash words, thumbnail (the lookup table)."""
    media = batch["kind"] != 0
    names = ["node", "kind", "thumb", *(f"w{k}" for k in range(HASH_WORDS))]
    return {name: batch[name][media] for name in names}


def _lookup(nodes: np.ndarray, table: tuple[np.ndarray, np.ndarray], default: np.ndarray):
    """Map nodes through sorted (keys, values); nodes not in keys take `default`."""
    keys, values = table
    if len(keys) == 0:
        return default
    pos = np.clip(np.searchsorted(keys, nodes), 0, len(keys) - 1)
    return np.where(keys[pos] == nodes, values[pos], default)


def _text_records(batch: dict, config: DedupConfig) -> dict:
    """(key, node) per exact key and per MinHash band, with the row's media hash to verify."""
    use = batch["has_text"]
    keys = []
    if config.exact:
        keys.append(batch["exact"].astype(np.uint64)[use][:, None])
    if config.near_text:
        keys.append(batch["bands"].astype(np.uint64)[use])
    if not keys:
        return {"key": np.empty(0, np.uint64), "node": np.empty(0, np.int64)}
    stacked = np.concatenate(keys, axis=1)  # (rows, exact + bands)
    reps = stacked.shape[1]
    out = {"key": stacked.ravel(), "node": np.repeat(batch["node"][use], reps)}
    exact = np.zeros(stacked.shape, np.uint8)
    exact[:, 0] = config.exact
    out["exact"] = exact.ravel()
    if config.near_media:
        # Identical text may come with a re-encoded copy; near text needs the same media.
        limit = np.full(stacked.shape, config.media.near_text_scale)
        if config.exact:
            limit[:, 0] = 1.0
        out["limit"] = limit.ravel()
    return out


def _components(edge_refs: list, partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, roots) sorted by node, for the rows that have a duplicate (a compact table)."""
    import ray

    if not edge_refs:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    stars = np.concatenate(ray.get(connected_components(edge_refs, partitions)))
    order = np.argsort(stars[:, 0])
    return stars[order, 0], stars[order, 1]


def _links(edge_refs: list) -> dict:
    """The strongest edge of every row that has one: {node, match, sim, why}, sorted by node."""
    import ray

    parts = ray.get([ray.remote(best_links).remote(ref) for ref in edge_refs])
    if not parts:
        return best_links({"hi": np.empty(0, np.int64), "lo": np.empty(0, np.int64)})
    return strongest_per_node({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def _keys_table(path: str, config: DedupConfig) -> dict:
    name = os.path.basename(path)
    table = storage.read_parquet(storage.join(config.run, "dedup", "_keys", name))
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}


def _root_info(batch: dict, roots: np.ndarray, config: DedupConfig) -> dict:
    keys = _keys_table(str(batch["path"][0]), config)
    mine = np.isin(keys["node"], roots)
    return {"node": keys["node"][mine], "id": keys["id"][mine], "exact": keys["exact"][mine]}


def _audit(nodes: np.ndarray, removed: np.ndarray, links: dict, match_ids) -> dict:
    """dup_match (id of the row whose edge merged this one) and that edge's similarity."""
    match = _lookup(nodes, (links["node"], links["match"]), nodes)
    sim = _lookup(nodes, (links["node"], links["sim"]), np.full(len(nodes), np.nan))
    ids = _lookup(match, match_ids, np.full(len(nodes), None, dtype=object))
    return {
        "dup_match": np.where(removed, ids, None).astype(object),
        "dup_similarity": [
            float(v) if r and v == v else None for v, r in zip(sim, removed, strict=True)
        ],
    }


def _labels(batch: dict, text_roots, node_ids, root_exact, media_roots, links) -> dict:
    """dup_cluster, dup_keep, dup_reason, media_cluster and the audit of one shard's rows."""
    nodes = batch["node"].astype(np.int64)
    ids = np.asarray(batch["id"], dtype=object)
    root = _lookup(nodes, text_roots, nodes)
    clustered = (root != nodes) | np.isin(nodes, text_roots[1])
    same_text = _lookup(root, root_exact, np.zeros(len(nodes), np.uint64)) == batch["exact"]
    why = _lookup(nodes, (links["node"], links["why"]), np.full(len(nodes), WHY_NEAR, np.int8))
    near = np.where(why == WHY_SEMANTIC, "semantic", "near")
    reason = np.where(root == nodes, "survivor", np.where(same_text, "exact", near))
    media_root = _lookup(nodes, media_roots, nodes)
    media_cluster = np.where(batch["kind"] > 0, _lookup(media_root, node_ids, ids), None)
    return {
        "id": ids,
        "dup_cluster": _lookup(root, node_ids, ids).astype(object),
        "dup_keep": root == nodes,
        "dup_reason": np.where(clustered, reason, "unique").astype(object),
        "media_cluster": media_cluster.astype(object),
        "media_unreadable": batch["kind"] < 0,
        **_audit(nodes, root != nodes, links, node_ids),
    }


def _write_shard(batch: dict, config: DedupConfig, tables: dict) -> dict:
    """Label one shard's rows (from its keys file) and write `dedup/part-NNNNN.parquet`."""
    path = str(batch["path"][0])
    labels = _labels(_keys_table(path, config), **tables)
    table = pa.table(
        {
            name: pa.array(list(labels[name]), DEDUP_SCHEMA.field(name).type)
            for name in DEDUP_SCHEMA.names
        },
        schema=DEDUP_SCHEMA,
    )
    name = os.path.basename(path)
    write_parquet_atomic(table, storage.join(config.run, "dedup", name))
    reasons = Counter(labels["dup_reason"].tolist())
    counts = {"rows": table.num_rows, "unreadable": int(labels["media_unreadable"].sum())}
    return {"counts": np.array([json.dumps({**counts, **reasons})])}


def _shard_items(config: DedupConfig):
    import ray

    shards = _shards(config.input_dir())
    items = [{"path": p, "offset": o, "shard": k} for k, (p, o) in enumerate(shards)]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items)))


def _key_rows(config: DedupConfig):
    import ray

    shards = _shards(config.input_dir())
    items = [{"path": p, "offset": o, "shard": k} for k, (p, o) in enumerate(shards)]
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        _row_keys, fn_kwargs={"config": config}, batch_size=1, batch_format="numpy"
    )


def _media_components(blocks: list, config: DedupConfig, fingerprints: list):
    if not config.near_media:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    edges = shuffle_to_edges(
        blocks,
        _media_records,
        verified_bucket_edges,
        config.partitions,
        {"config": config},
        {"fingerprints": fingerprints, "config": config.media},
    )
    return _components(edges, config.partitions)


def _text_edge_fn(config: DedupConfig, blocks: list, fingerprints: list):
    """The partition step of the text shuffle and its arguments (verified or not)."""
    media = {"fingerprints": fingerprints, "media": config.media} if config.near_media else {}
    if config.text.verify:
        kwargs = {"signatures": blocks, "threshold": config.text.threshold, **media}
        return text_bucket_edges, kwargs
    if config.near_media:
        return verified_bucket_edges, {"fingerprints": fingerprints, "config": config.media}
    return bucket_edges, None


def _semantic(config: DedupConfig, fingerprints: list) -> list:
    """SemDeDup edge refs (ray_jobs/dedup_semantic.py); near-text media rules when hashing."""
    from ray_jobs.dedup_semantic import semantic_edges

    rows = sum(storage.parquet_file(p).metadata.num_rows for p, _ in _shards(config.input_dir()))
    media = {}
    if config.near_media:
        media = {"fingerprints": fingerprints, "media": config.media}
        media["media_scale"] = config.media.near_text_scale
    keys_dir = storage.join(config.run, "dedup", "_keys")
    return semantic_edges(
        _shard_items(config), keys_dir, rows, config.semantic, config.partitions, **media
    )


def _sorted_table(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys)
    return keys[order], values[order]


def _root_tables(config: DedupConfig, roots: np.ndarray):
    """(node -> id, node -> exact key) sorted tables for the given nodes."""
    info = _shard_items(config).map_batches(
        _root_info, fn_kwargs={"roots": roots, "config": config}, batch_size=1, batch_format="numpy"
    )
    info = info.take_all()
    nodes = np.array([r["node"] for r in info], dtype=np.int64)
    ids = _sorted_table(nodes, np.array([r["id"] for r in info], dtype=object))
    exact = _sorted_table(nodes, np.array([r["exact"] for r in info], dtype=np.uint64))
    return ids, exact


class _Clock:
    """Wall seconds per step, for `dedup/_seconds.json` (steps run one after another)."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 2)
        self._last = now


def dedup(config: DedupConfig) -> dict:
    """Run the dedup stage; returns counts {rows, unique, survivor, exact, near, ...}."""
    out_dir = storage.join(config.run, "dedup")
    if is_complete(out_dir):
        return read_counts(out_dir)
    import ray

    ensure_ray()
    clock = _Clock()
    blocks = _key_rows(config).to_numpy_refs()  # row keys stay in the object store
    ray.wait(blocks, num_returns=len(blocks))
    clock.lap("row_keys")
    fingerprints = []
    if config.near_media:
        fingerprints = [ray.remote(_fingerprint_part).remote(block) for block in blocks]
    media_roots = _media_components(blocks, config, fingerprints)
    clock.lap("media_components")
    edge_fn, edge_kwargs = _text_edge_fn(config, blocks, fingerprints)
    edges = shuffle_to_edges(
        blocks, _text_records, edge_fn, config.partitions, {"config": config}, edge_kwargs
    )
    ray.wait(edges, num_returns=len(edges))  # so the step timings below are per step
    clock.lap("text_shuffle")
    if config.semantic.enabled:
        edges = edges + _semantic(config, fingerprints)
        ray.wait(edges, num_returns=len(edges))
        clock.lap("semantic")
    text_roots = _components(edges, config.partitions)
    links = _links(edges)
    clock.lap("text_components")
    # one pass over the key files for every node whose id or exact key a label needs
    named = np.unique(np.concatenate([text_roots[1], media_roots[1], links["match"]]))
    node_ids, root_exact = _root_tables(config, named)
    tables = {
        "text_roots": text_roots,
        "node_ids": node_ids,
        "root_exact": root_exact,
        "media_roots": media_roots,
        "links": links,
    }
    written = (
        _shard_items(config)
        .map_batches(
            _write_shard,
            fn_kwargs={"config": config, "tables": tables},
            batch_size=1,
            batch_format="numpy",
        )
        .take_all()
    )
    clock.lap("labels")
    counts: Counter = Counter()
    for item in written:
        counts.update(json.loads(item["counts"]))
    result = {
        "rows": counts.pop("rows", 0),
        "media_unreadable": counts.pop("unreadable", 0),
        "reasons": {k: counts.get(k, 0) for k in REASONS},
        "media_clustered_rows": int(len(media_roots[0]) + len(np.unique(media_roots[1]))),
        "shards": len(written),
    }
    result["removed"] = sum(result["reasons"][k] for k in ("exact", "near", "semantic"))
    result["kept"] = result["rows"] - result["removed"]
    # wall time per step, beside the counts
    storage.write_text(storage.join(out_dir, "_seconds.json"), json.dumps(clock.laps))
    mark_complete(out_dir, result)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmcurate dedup",
        description=__doc__ + "\nThe settings are the run's dedup stage (RUN/config.yaml or "
        "--recipe) when it has one, else the defaults; the flags given override them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--recipe", default=None, help="recipe file (default RUN/config.yaml)")
    parser.add_argument("--input", default=None, help="Parquet pool shards; default RUN/pool")
    parser.add_argument("--threshold", type=float, default=None, help="MinHash edge Jaccard")
    parser.add_argument(
        "--lsh-threshold",
        type=float,
        default=None,
        help="similarity the LSH bands are chosen for (candidates; verified at --threshold)",
    )
    parser.add_argument("--num-perm", type=int, default=None)
    parser.add_argument("--unit", choices=("word", "char"), default=None)
    parser.add_argument("--ngram", type=int, default=None)
    parser.add_argument("--no-media", action="store_true", default=None, help="no media hashing")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        default=None,
        help="every LSH band candidate is an edge (no similarity check against the threshold)",
    )
    parser.add_argument(
        "--semantic",
        action="store_true",
        default=None,
        help="add SemDeDup edges (text/visual embeddings)",
    )
    parser.add_argument("--semantic-threshold", type=float, default=None)
    parser.add_argument("--partitions", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    config = _cli_config(_parser().parse_args(argv))
    print(f"[mmcurate] dedup config: {asdict(config)} bands x rows: {config.text.band_rows()}")
    started = time.time()
    counts = dedup(config)
    print(stage_line("dedup", counts, started))
    print(f"[mmcurate] dedup reasons: {counts['reasons']}")
    return 0


def _cli_config(args) -> DedupConfig:
    """The run's dedup stage configuration (or the defaults), then the flags given."""
    from ray_jobs.stage_recipe import stage_base
    from ray_jobs.stages import dedup_config

    config, given = stage_base("dedup", args, dedup_config, DedupConfig(args.run))
    text = {
        k: given[k]
        for k in ("threshold", "lsh_threshold", "num_perm", "unit", "ngram")
        if k in given
    }
    if "no_verify" in given:
        text["verify"] = False
    semantic = {}
    if "semantic" in given:
        semantic["enabled"] = True
    if "semantic_threshold" in given:
        semantic["threshold"] = given["semantic_threshold"]
    top = {"input": given["input"]} if "input" in given else {}
    if "no_media" in given:
        top["near_media"] = False
    if "partitions" in given:
        top["partitions"] = given["partitions"]
    return replace(
        config,
        text=replace(config.text, **text),
        semantic=replace(config.semantic, **semantic),
        **top,
    )


if __name__ == "__main__":
    raise SystemExit(main())

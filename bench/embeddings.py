"""Rows/s of the embedding, style, capability and clustering operators, each beside a reference.

Runs every operator in-process (one torch thread) on the same synthetic pool rows and prints
rows/s plus a reference measured in the same run, so the ratio is meaningful on a busy
machine: the bare model call for the embedders (the ratio is the operator's overhead), a
pass-through batch operator for the styler and the prompted-scorer plumbing, and brute-force
NumPy nearest-centroid for the k-means assignment.

    python bench/embeddings.py --rows 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from operators.batches import as_table, sample_text, set_column  # noqa: E402
from operators.capabilities import (  # noqa: E402
    EmbeddingCapabilityScorer,
    PromptedCapabilityScorer,
    PromptedScorerConfig,
)
from operators.clustering import ClusterAssigner, ClusterConfig, fit_kmeans  # noqa: E402
from operators.embeddings import (  # noqa: E402
    TextEmbedder,
    VisualEmbedConfig,
    VisualEmbedder,
)
from operators.formats.readers import iter_chunk_tables  # noqa: E402
from operators.formats.records import RecordOptions  # noqa: E402
from operators.media import load_image  # noqa: E402
from operators.styles import RuleStyler  # noqa: E402


def rate(fn, rows: int, repeats: int = 1) -> float:
    """Rows per second of `fn()` over `rows` rows (best of `repeats`)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return rows / best


def passthrough(table: pa.Table) -> pa.Table:
    """Reference batch operator: read the text, add a constant column."""
    texts = [sample_text(m) for m in table.column("messages").to_pylist()]
    return set_column(as_table(table), "bench_len", pa.array([len(t) for t in texts]))


def canned_generate():
    replies = ["4", "Score: 3/5", "I cannot rate this.", "**5**"]
    return lambda prompts: [replies[i % 4] for i in range(len(prompts))]


def pool_rows(rows: int, workdir: str) -> pa.Table:
    from ray_jobs.synth import synthesize

    synthesize(rows, workdir, seed=0, parallel=False)
    options = RecordOptions(media_root=workdir, source="pool", check_media=True)
    path = os.path.join(workdir, "pool.jsonl")
    return pa.concat_tables([r for r, _ in iter_chunk_tables(path, options)])


def line(name: str, rows_s: float, ref_name: str, ref_s: float) -> None:
    ratio = rows_s / ref_s
    print(f"{name:34s} {rows_s:9.1f} rows/s | ref {ref_name:28s} {ref_s:9.1f} | ratio {ratio:.3f}")


def bench_text(table: pa.Table) -> tuple[pa.Table, float]:
    embedder = TextEmbedder()
    texts = [sample_text(m) for m in table.column("messages").to_pylist()]
    ref = rate(lambda: embedder.model.encode(texts, batch_size=64), table.num_rows)
    out = embedder(table)
    line(
        "text_embedding (MiniLM-L6)",
        rate(lambda: embedder(table), table.num_rows),
        "bare encode",
        ref,
    )
    return out, ref


def tiny_vlm(model_dir: str) -> str:
    """Build the tests' tiny Qwen2-VL (random weights, in-process tokenizer) into model_dir."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    test = os.path.join(root, "tests", "operators", "test_embeddings.py")
    spec = importlib.util.spec_from_file_location("_test_embeddings", test)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_qwen2_vl(model_dir)


def bench_visual(table: pa.Table, path: str) -> None:
    embedder = VisualEmbedder(VisualEmbedConfig(path, frames=8))
    images = [
        load_image(m[0])
        for m, k in zip(table["media"].to_pylist(), table["media_type"].to_pylist(), strict=True)
        if k == "image" and m
    ]
    ref = rate(lambda: embedder.embed_images(images), len(images))
    ours = rate(lambda: embedder(table), table.num_rows)
    line("visual_embedding", ours, "vision tower, decoded images", ref)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--skip-visual", action="store_true")
    parser.add_argument("--vlm", default=None, help="HF VLM directory; default: a tiny Qwen2-VL")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="bench_embed_")
    table = pool_rows(args.rows, work)
    n = table.num_rows
    print(f"rows {n} (synthetic pool, seed 0); torch threads 1")
    ref = rate(lambda: passthrough(table), n, 3)
    line("styles (rules)", rate(lambda: RuleStyler()(table), n, 3), "pass-through operator", ref)
    embedded, encode = bench_text(table)
    scorer = EmbeddingCapabilityScorer()
    line(
        "cap_* (embedding, reuses column)",
        rate(lambda: scorer(embedded), n, 3),
        "pass-through operator",
        ref,
    )
    line(
        "cap_* (embedding, embeds itself)",
        rate(lambda: scorer(table), n),
        "bare encode",
        encode,
    )
    prompted = PromptedCapabilityScorer(PromptedScorerConfig(batch_size=256), canned_generate)
    line(
        "cap_* prompted (plumbing+parse)",
        rate(lambda: prompted(table), n, 3),
        "pass-through operator",
        ref,
    )
    model = fit_kmeans(embedded, ClusterConfig(k=64, seed=0))
    assigner = ClusterAssigner(model)
    vectors = np.stack(embedded["text_embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)

    def brute():
        return ((vectors[:, None, :] - model.centroids[None]) ** 2).sum(-1).argmin(1)

    line(
        "cluster assign (faiss, k=64)",
        rate(lambda: assigner(embedded), n, 3),
        "numpy brute-force argmin",
        rate(brute, n, 3),
    )
    if not args.skip_visual:
        bench_visual(table, args.vlm or tiny_vlm(os.path.join(work, "tiny_qwen2_vl")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

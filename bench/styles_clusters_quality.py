"""Quality of the styler, the offline capability scorer and the clusters on the synthetic pool.

Prints, against the pool's ground truth:
- the rule styler's agreement with the known answer formats (mapped onto mmSSR's names by
  `POOL_STYLE_TO_MMSSR`), overall and per format;
- for the offline capability scorer, the mean `cap_*` of the category the capability fits
  versus the other rows;
- cluster purity against the five categories for k in (5, 16, 64), on the text embedding
  alone and with GDO's block (hashed words only; and with a stand-in `motion` column that
  is 2.0 for videos and 0 for images, until the motion operator's column is there).

    python bench/styles_clusters_quality.py --rows 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from operators.batches import sample_text  # noqa: E402
from operators.capabilities import EmbeddingCapabilityScorer  # noqa: E402
from operators.clustering import ClusterAssigner, ClusterConfig, fit_kmeans  # noqa: E402
from operators.formats.readers import iter_chunk_tables  # noqa: E402
from operators.formats.records import RecordOptions  # noqa: E402
from operators.styles import ANSWER_FORMATS, POOL_STYLE_TO_MMSSR, RuleStyler  # noqa: E402


def purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    total = 0
    for c in np.unique(clusters):
        _, counts = np.unique(labels[clusters == c], return_counts=True)
        total += counts.max()
    return total / len(labels)


def styler_agreement(table: pa.Table, truth: dict) -> None:
    styled = RuleStyler()(table)
    hits: dict[str, list[bool]] = {}
    for row_id, styles in zip(styled["id"].to_pylist(), styled["styles"].to_pylist(), strict=True):
        pool_style = truth[row_id]
        formats = [s for s in styles if s in ANSWER_FORMATS]
        hits.setdefault(pool_style, []).append(formats == [POOL_STYLE_TO_MMSSR[pool_style]])
    every = [h for v in hits.values() for h in v]
    print(f"styler agreement: {np.mean(every):.4f} over {len(every)} rows")
    for style, values in sorted(hits.items()):
        mapped = POOL_STYLE_TO_MMSSR[style]
        print(f"  {style:18s} -> {mapped:18s} {np.mean(values):.4f} ({len(values)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from ray_jobs.synth import synthesize

    work = tempfile.mkdtemp(prefix="quality_")
    synthesize(args.rows, work, seed=0, parallel=False)
    options = RecordOptions(media_root=work, source="pool", check_media=False)
    path = os.path.join(work, "pool.jsonl")
    table = pa.concat_tables([r for r, _ in iter_chunk_tables(path, options)])
    gt = pq.read_table(os.path.join(work, "ground_truth.parquet")).to_pandas()
    styler_agreement(table, dict(zip(gt["id"], gt["style"], strict=True)))
    category = dict(zip(gt["id"], gt["category"], strict=True))
    cats = np.array([category[i] for i in table["id"].to_pylist()])

    scorer = EmbeddingCapabilityScorer()
    vectors = scorer.embedder.encode([sample_text(m) for m in table["messages"].to_pylist()])
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    embedded = table.append_column("text_embedding", column)
    scored = scorer(embedded)
    print("offline capability scores: mean on the fitting category vs the other rows")
    for cat, cap in [
        ("ocr", "cap_ocr"),
        ("chart", "cap_data_understanding"),
        ("temporal", "cap_activity_recognition"),
        ("general", "cap_attribute_identification"),
    ]:
        values = scored[cap].to_numpy()
        own, rest = values[cats == cat].mean(), values[cats != cat].mean()
        print(f"  {cap:30s} {cat:8s} {own:.2f} vs {rest:.2f}")

    video = table["media_type"].to_numpy(zero_copy_only=False) == "video"
    with_motion = embedded.append_column("motion", pa.array(np.where(video, 2.0, 0.0)))
    print("cluster purity vs the 5 categories (k-means, 3 restarts, seeds 0/1/2)")
    for k in (5, 16, 64):
        for name, data, gdo in [
            ("text embedding", embedded, False),
            ("+ GDO block (words)", embedded, True),
            ("+ GDO block (words, motion)", with_motion, True),
        ]:
            values = []
            for seed in range(3):
                model = fit_kmeans(data, ClusterConfig(k=k, seed=seed, gdo_features=gdo))
                values.append(purity(ClusterAssigner(model)(data)["cluster"].to_numpy(), cats))
            print(f"  k={k:3d} {name:30s} " + " ".join(f"{v:.3f}" for v in values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`mmcurate report`: one self-contained `RUN/report.html` with the run's figures.

Sections: the funnel from input rows to each subset, pool composition and quarantine counts,
descriptor distributions (per category), duplicate clusters found, galleries of real rows
(`ray_jobs/report_gallery.py`: duplicate clusters side by side, each descriptor's highest and
lowest rows, OST's most harmful rows, quarantined rows whose media still decode), each
subset's composition against the pool, training curves (accuracy against samples seen, with
the full-data reference) and a table of final figures. Plots are matplotlib PNGs (laid out
with constrained layout, so titles never overlap) and thumbnails JPEGs, inlined as base64: the
page needs no network and no files beside it, and a static image is all a reviewer's browser,
an e-mail or a CI artifact needs. A section whose stage has not run says so.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import time

import numpy as np
import pyarrow.compute as pc

from operators import storage
from ray_jobs import report_gallery as gallery
from ray_jobs.rundir import is_complete, read_counts, stage_line

__all__ = ["build_report", "main"]

DESCRIPTORS = (
    "motion",
    "frame_div",
    "loss",
    "vds",
    "ppl",
    "temporal_loss_gap",
    "temporal_prompted",
    "stability",
    "pism_lambda",
    "cmab_ratio",
    "ost_utility",
    "cluster_dist",
)


# The papers' cut-offs drawn on the histograms (dotted), as the selection code applies them:
# PISM lambda* levels and CMAB ratio bands (selection/baselines.py pism_levels / cmab_levels),
# GDO's Static / Mixed / Temporal strata of `temporal` (selection/gdo_strata.py).
CUTOFFS = {
    "pism_lambda": ((0.0, 0.4, 0.7), "PISM: unsolved | hard | medium | easy"),
    "cmab_ratio": ((0.1, 0.4, 1.6, 1.9), "CMAB: easy | medium | hard | medium | easy"),
    "temporal": ((0.25, 0.75), "GDO strata: Static | Mixed | Temporal"),
}


def _figure_html(fig, title: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def _table_html(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read(run: str, stage: str, columns=None):
    path = storage.join(run, stage)
    files = [f for f in storage.listdir(path) if f.endswith(".parquet")]
    if not files:
        return None
    schema_names = storage.read_schema(storage.join(path, files[0])).names
    wanted = [c for c in columns if c in schema_names] if columns else None
    return storage.read_parquet(path, columns=wanted)


def _pool_section(run: str) -> str:
    pool = _read(run, "pool", ["media_type", "category", "source"])
    if pool is None:
        return "<p>The pool has not been ingested.</p>"
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), layout="constrained")
    for ax, column in zip(axes, ("media_type", "category", "source"), strict=True):
        counts = pool.column(column).fill_null("(none)").value_counts().to_pylist()
        ax.bar([c["values"] for c in counts], [c["counts"] for c in counts], color="#4c72b0")
        ax.set_title(column)
        ax.tick_params(axis="x", rotation=30)
    parts = [_figure_html(fig, f"Pool composition ({pool.num_rows} rows)")]
    qdir = storage.join(run, "quarantine")
    if storage.isdir(qdir):
        rows = []
        for stage in storage.listdir(qdir):
            table = _read(qdir, stage, ["reason"])
            if table is not None and table.num_rows:
                for item in table.column("reason").value_counts().to_pylist():
                    rows.append([stage, item["values"], item["counts"]])
        parts.append(
            "<h3>Quarantine</h3>"
            + (
                _table_html(["stage", "reason", "rows"], rows)
                if rows
                else "<p>No row was quarantined.</p>"
            )
        )
    return "".join(parts)


def _descriptor_section(run: str) -> str:
    scored = _read(run, "scored", ["category", "media_type", *DESCRIPTORS])
    if scored is None:
        return "<p>The score stage has not run.</p>"
    present = [d for d in DESCRIPTORS if d in scored.column_names]
    if not present:
        return "<p>No descriptor columns in the scored pool.</p>"
    plt = _plt()
    cols = 3
    rows = (len(present) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(12, 3 * rows), squeeze=False, layout="constrained"
    )
    groups = scored.column("category").fill_null("(none)").to_numpy(zero_copy_only=False)
    for ax, name in zip(axes.flat, present, strict=False):
        values = scored.column(name).to_numpy(zero_copy_only=False).astype(float)
        for group in sorted(set(groups)):
            chosen = values[(groups == group) & np.isfinite(values)]
            if len(chosen):
                ax.hist(chosen, bins=30, alpha=0.5, label=str(group))
        ax.set_title(name)
        if name in CUTOFFS:
            cuts, bands = CUTOFFS[name]
            for cut in cuts:
                ax.axvline(cut, color="black", linestyle=":", linewidth=1)
            ax.set_title(f"{name}\n{bands}", fontsize=9)
    for ax in list(axes.flat)[len(present) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return _figure_html(fig, "Descriptor distributions by category")


def _dedup_section(run: str) -> str:
    dedup = _read(run, "dedup", ["id", "dup_cluster", "dup_keep", "dup_reason"])
    if dedup is None:
        return "<p>The dedup stage has not run.</p>"
    sizes = dedup.column("dup_cluster").value_counts().field("counts").to_numpy()
    removed = dedup.num_rows - int(pc.sum(dedup.column("dup_keep")).as_py() or 0)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
    multi = sizes[sizes > 1]
    ax.hist(multi if len(multi) else [1], bins=range(2, int(max(multi, default=2)) + 2))
    ax.set_xlabel("rows per duplicate cluster (clusters of 2+)")
    reasons = []
    if "dup_reason" in dedup.column_names:
        for item in dedup.column("dup_reason").fill_null("kept").value_counts().to_pylist():
            reasons.append([item["values"], item["counts"]])
    summary = _table_html(
        ["what", "rows"],
        [
            ["rows", dedup.num_rows],
            ["clusters of 2+", int(len(multi))],
            ["removed as duplicates", removed],
            *reasons,
        ],
    )
    return summary + _figure_html(fig, "Duplicate cluster sizes")


def _subset_section(run: str, pool_categories: dict) -> str:
    root = storage.join(run, "subsets")
    names = storage.listdir(root)
    if not names:
        return "<p>No subset has been selected.</p>"
    rows = []
    for name in names:
        manifest_path = storage.join(root, name, "manifest.json")
        if not storage.exists(manifest_path):
            continue
        manifest = json.loads(storage.read_text(manifest_path))
        per_category = manifest.get("counts", {}).get("category", {})
        total = sum(per_category.values()) or 1
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(per_category.items()))
        rows.append(
            [
                name,
                manifest.get("method", "?"),
                manifest.get("preset") or "",
                manifest.get("selected", {}).get("rows", total),
                (manifest.get("order") or {}).get("order", ""),
                shares,
            ]
        )
    pool_total = sum(pool_categories.values()) or 1
    pool_shares = ", ".join(f"{k} {v / pool_total:.0%}" for k, v in sorted(pool_categories.items()))
    rows.append(["(pool)", "", "", pool_total, "", pool_shares])
    return _table_html(["subset", "method", "preset", "rows", "order", "category shares"], rows)


def _funnel_section(run: str) -> str:
    """Rows at each step: input, ingested, scored, unique after dedup, then each subset."""
    steps = []
    for label, stage, key in (
        ("input rows", "pool", "input"),
        ("ingested", "pool", "kept"),
        ("scored", "scored", "kept"),
        ("unique after dedup", "dedup", "kept"),
    ):
        folder = storage.join(run, stage)
        if is_complete(folder) and key in read_counts(folder):
            steps.append((label, read_counts(folder)[key]))
    root = storage.join(run, "subsets")
    for name in storage.listdir(root) if storage.isdir(root) else []:
        manifest = storage.join(root, name, "manifest.json")
        if storage.exists(manifest):
            rows = json.loads(storage.read_text(manifest)).get("selected", {}).get("rows")
            steps.append((f"subset {name}", rows or 0))
    if not steps:
        return "<p>Nothing has run yet.</p>"
    top = max(v for _, v in steps) or 1
    bars = "".join(
        f'<div class="step"><span class="label">{html.escape(label)}</span>'
        f'<span class="bar" style="width:{60 * value / top:.1f}%"></span>'
        f"<span>{value}</span></div>"
        for label, value in steps
    )
    return f'<div class="funnel">{bars}</div>'


def _gallery_section(run: str) -> str:
    """Pictures of real rows: duplicates, descriptor extremes, OST's harmful, quarantine."""
    stage = "scored" if storage.isdir(storage.join(run, "scored")) else "pool"
    rows = _read(run, stage, [*gallery.CARD_COLUMNS, *DESCRIPTORS])
    if rows is None:
        return "<p>The pool has not been ingested.</p>"
    parts = []
    dedup = _read(run, "dedup", ["id", "dup_cluster", "dup_keep", "dup_reason"])
    if dedup is not None:
        clusters = gallery.duplicate_gallery(dedup, rows)
        parts.append(f"<h3>Duplicate clusters (sample)</h3>{clusters}")
    for name in [d for d in DESCRIPTORS if d in rows.column_names and d != "ost_utility"]:
        found = gallery.extremes_gallery(rows, name)
        if found:
            parts.append(f"<h3>{html.escape(name)}: highest and lowest</h3>{found}")
    if "ost_utility" in rows.column_names:
        harmful = gallery.extremes_gallery(rows, "ost_utility", count=6, lowest_only=True)
        parts.append("<h3>OST: most harmful rows (lowest one-step utility)</h3>" + harmful)
    qdir = storage.join(run, "quarantine")
    for name in storage.listdir(qdir) if storage.isdir(qdir) else []:
        table = _read(qdir, name, ["id", "reason", "error", "raw"])
        if table is not None and table.num_rows and "raw" in table.column_names:
            found = gallery.quarantine_gallery(run, table)
            parts.append(f"<h3>Quarantined at {html.escape(name)}, media still decode</h3>{found}")
    return "".join(parts)


def _read_metrics(path: str) -> list[dict]:
    lines = storage.read_text(path).splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if "accuracy_mean" in r]


def _curves_section(run: str) -> tuple[str, list]:
    """Mean held-out accuracy against samples seen per run; final figures per category."""
    root = storage.join(run, "train")
    if not storage.isdir(root):
        return "<p>No training run.</p>", []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    finals = []
    for name in storage.listdir(root):
        path = storage.join(root, name, "metrics.jsonl")
        evals = _read_metrics(path) if storage.exists(path) else []
        if not evals:
            continue
        seen = [r["samples_seen"] for r in evals]
        style = {"color": "black", "linestyle": "--"} if name == "full" else {"marker": "o"}
        ax.plot(seen, [r["accuracy_mean"] for r in evals], label=name, **style)
        finals.append((name, evals[-1]))
    chance = _chance_line(root)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", label="chance (best constant answer)")
    ax.set_xlabel("samples seen")
    ax.set_ylabel("held-out accuracy (mean over categories)")
    ax.legend(fontsize=8)
    title = "Accuracy against samples seen (full pool dashed, chance dotted)"
    return _figure_html(fig, title), finals


def _chance_line(train_root: str) -> float | None:
    """`constant_answer_accuracy` of the held-out rows of the full-pool run (`full`), else of
    the first run that has them; None without any."""
    from training.evaluate import constant_answer_accuracy

    names = sorted(storage.listdir(train_root), key=lambda n: (n != "full", n))
    for name in names:
        path = storage.join(train_root, name, "heldout.parquet")
        if storage.exists(path):
            rows = storage.read_parquet(path, columns=["category", "answer"]).to_pylist()
            categories = [r["category"] or "none" for r in rows]
            return constant_answer_accuracy(categories, [str(r["answer"] or "") for r in rows])
    return None


def _final_table(finals: list) -> str:
    """Final accuracy per category, the mean, and mmSSR's % of full."""
    if not finals:
        return "<p>No final figures yet.</p>"
    categories = sorted({c for _, r in finals for c in (r.get("accuracy") or {})})
    full = dict(finals).get("full")
    rows = []
    for name, record in finals:
        mean = record["accuracy_mean"]
        share = f"{mean / full['accuracy_mean']:.0%}" if full and full["accuracy_mean"] else ""
        per_category = [record.get("accuracy", {}).get(c, "") for c in categories]
        rows.append(
            [
                name,
                record["samples_seen"],
                *per_category,
                mean,
                share,
                round(record.get("wall_s", 0.0), 1),
            ]
        )
    header = ["run", "samples seen", *categories, "mean", "% of full", "wall s"]
    return _table_html(header, rows)


def _quality_section(run: str) -> str:
    """The selection-quality benchmark's table, verdicts and plots (RUN/quality/, written
    by `mmcurate bench quality`), when present."""
    folder = os.path.join(run, "quality")
    if not os.path.exists(os.path.join(folder, "results.json")):
        return ""
    with open(os.path.join(folder, "results.json")) as handle:
        results = json.load(handle)
    lines = [line for line in results["table"].splitlines() if not line.startswith("|---")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    parts = [_table_html(cells[0], cells[1:])]
    parts.append("<ul>" + "".join(f"<li>{html.escape(v[2:])}</li>" for v in results["verdicts"]))
    parts.append("</ul>")
    for name in ("accuracy.png", "curves.png"):
        with open(os.path.join(folder, name), "rb") as handle:
            data = base64.b64encode(handle.read()).decode()
        parts.append(f'<figure><img alt="{name}" src="data:image/png;base64,{data}"></figure>')
    return "".join(parts)


def build_report(run: str) -> str:
    """Write `RUN/report.html`; returns its path."""
    pool = _read(run, "pool", ["category"])
    pool_categories = {}
    if pool is not None:
        for item in pool.column("category").fill_null("(none)").value_counts().to_pylist():
            pool_categories[item["values"]] = item["counts"]
    curves, finals = _curves_section(run)
    final_table = _final_table(finals)
    sections = [
        ("Funnel", _funnel_section(run)),
        ("Pool", _pool_section(run)),
        ("Descriptors", _descriptor_section(run)),
        ("Duplicates", _dedup_section(run)),
        ("Rows", _gallery_section(run)),
        ("Subsets", _subset_section(run, pool_categories)),
        ("Training", curves),
        ("Final figures", final_table),
    ]
    quality = _quality_section(run)
    if quality:
        sections.append(("Selection-quality benchmark", quality))
    body = "".join(f"<section><h2>{title}</h2>{content}</section>" for title, content in sections)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>mmcurate report</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em}"
        "table{border-collapse:collapse;display:block;overflow-x:auto;max-width:100%}"
        "td,th{border:1px solid #ccc;padding:3px 8px}figure{margin:.5em 0}"
        "img{max-width:100%;height:auto}"
        ".funnel .step{display:flex;align-items:center;gap:8px;margin:2px 0}"
        ".funnel .label{flex:0 0 11em}.funnel .bar{height:14px;background:#4c72b0}"
        f"{gallery.CSS}</style></head><body>"
        f"<h1>mmcurate report: {html.escape(_run_name(run))}</h1>"
        f"{body}</body></html>"
    )
    path = storage.join(run, "report.html")
    storage.write_text(path, page)
    return path


def _run_name(run: str) -> str:
    if storage.is_remote(run):
        return run.rstrip("/").rsplit("/", 1)[-1]
    return os.path.basename(os.path.abspath(storage.local_path(run)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate report", description=__doc__)
    parser.add_argument("--run", required=True, help="run directory")
    args = parser.parse_args(argv)
    started = time.time()
    path = build_report(args.run)
    print(stage_line("report", {"written": path}, started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Figures, verdicts, table and plots of the selection-quality benchmark (ray_jobs/quality.py).

Per arm and seed, from the run's `metrics.jsonl`: final held-out accuracy per category and
their unweighted mean; "% of full" (mmSSR: final mean / the full-pool arm's final mean, same
seed); samples to reach the full arm's peak mean accuracy (GDO's peak match, first evaluation
at or above it) and the reduction factor (full's samples at its peak / the arm's). Seeds are
then averaged (mean, std). Chance is uniform guessing over each held-out question's answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np

from training.evaluate import read_metrics

__all__ = ["chance_accuracy", "summarize_results", "verdicts", "write_outputs"]

BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"


def chance_accuracy(heldout_pool: str, heldout_ids: list[str]) -> dict:
    """Per category (and "mean"): accuracy of uniform guessing over each question's answers
    (yes/no 1/2, multiple choice 1/4, else 1 / size of its type's answer set)."""
    import pyarrow.parquet as pq

    from ray_jobs.synthetic_pool import ANSWER_SETS

    truth = {r["id"]: r for r in pq.read_table(f"{heldout_pool}/ground_truth.parquet").to_pylist()}
    per: dict[str, list[float]] = {}
    for row_id in heldout_ids:
        t = truth[row_id]
        size = {"yes/no": 2, "multi-choice": 4}.get(t["style"], len(ANSWER_SETS[t["qtype"]]))
        per.setdefault(t["category"], []).append(1.0 / size)
    out = {c: float(np.mean(v)) for c, v in sorted(per.items())}
    out["mean"] = float(np.mean(list(out.values())))
    return out


def label_counts(out: str) -> dict:
    """How the scored pool's rows are labelled by PISM and CMAB (their arms' row source)."""
    import pyarrow.dataset as ds

    folder = os.path.join(out, "run", "scored")
    if not os.path.isdir(folder):
        return {}
    dataset = ds.dataset(folder, format="parquet")
    counts = {}
    for column in ("pism_label", "cmab_label"):
        if column in dataset.schema.names:
            values = dataset.to_table(columns=[column]).column(column).fill_null("(none)")
            counts[column] = {v["values"]: v["counts"] for v in values.value_counts().to_pylist()}
    return counts


def _per_seed(run: dict, full: dict | None) -> dict:
    records = read_metrics(os.path.join(run["loop"]["out"], "metrics.jsonl"))  # read once
    evals = [r for r in records if r.get("event") == "eval" and "accuracy_mean" in r]
    if not evals:
        return {"evaluations": 0}
    final = evals[-1]
    out = {
        "final": final["accuracy"],
        "final_mean": final["accuracy_mean"],
        "samples_seen": final["samples_seen"],
        "curve": [(r["samples_seen"], r["accuracy_mean"]) for r in evals],
        "wall_s": run["wall_s"],
        "rows": run["rows"],
    }
    rewards = [r["reward"] for r in records if r.get("event") == "train" and "reward" in r]
    if rewards:
        out["reward_first"], out["reward_last"] = rewards[0], float(np.mean(rewards[-3:]))
    if full and full.get("curve"):
        if full["final_mean"] > 0:
            out["percent_of_full"] = 100.0 * final["accuracy_mean"] / full["final_mean"]
        start = full["curve"][0][1]
        peak_samples, peak = max(full["curve"][1:] or full["curve"], key=lambda p: p[1])
        if peak > start:  # a peak match needs a full-pool run that learned something
            reached = [s for s, acc in out["curve"] if acc >= peak and s > 0]
            out["samples_to_full_peak"] = reached[0] if reached else None
            out["reduction"] = peak_samples / reached[0] if reached else None
    return out


def _stat(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def summarize_results(cfg, runs: list[dict], selection_s: dict) -> dict:
    """Aggregate the runs of every arm over seeds; adds the table and the verdicts."""
    import pyarrow.parquet as pq

    by_key = {(r["arm"], r["seed"]): r for r in runs}
    subset_of = {r["arm"]: r.get("subset_arm", r["arm"]) for r in runs}
    full = {
        seed: _per_seed(by_key[("full", seed)], None)
        for seed in cfg.seeds
        if ("full", seed) in by_key
    }
    arms = {}
    for name in dict.fromkeys(r["arm"] for r in runs):
        seeds = [_per_seed(by_key[(name, s)], full.get(s)) for s in cfg.seeds]
        seeds = [s for s in seeds if s.get("evaluations", 1)]
        categories = sorted({c for s in seeds for c in s.get("final", {})})
        arm = {
            "rows": _stat([s.get("rows") for s in seeds])[0],
            "accuracy": {c: _stat([s["final"].get(c) for s in seeds]) for c in categories},
            "mean": _stat([s.get("final_mean") for s in seeds]),
            "percent_of_full": _stat([s.get("percent_of_full") for s in seeds]),
            "samples_to_full_peak": _stat([s.get("samples_to_full_peak") for s in seeds]),
            "reached_full_peak": sum(s.get("samples_to_full_peak") is not None for s in seeds),
            "reduction": _stat([s.get("reduction") for s in seeds]),
            "train_s": _stat([s.get("wall_s") for s in seeds]),
            "select_s": _stat([selection_s.get((subset_of[name], s)) for s in cfg.seeds]),
            "curves": [s.get("curve", []) for s in seeds],
            "seeds": len(seeds),
        }
        if any("reward_first" in s for s in seeds):
            arm["reward_first"] = _stat([s.get("reward_first") for s in seeds])
            arm["reward_last"] = _stat([s.get("reward_last") for s in seeds])
        arms[name] = arm
    heldout = pq.read_table(os.path.join(cfg.out, "heldout.parquet"), columns=["id"])
    chance = chance_accuracy(os.path.join(cfg.out, "heldout"), heldout.column("id").to_pylist())
    results = {"arms": arms, "chance": chance, "labels": label_counts(cfg.out)}
    results["verdicts"] = verdicts(arms, chance)
    results["table"] = markdown_table(arms, chance)
    return results


def _mean(arms: dict, name: str) -> float | None:
    return arms.get(name, {}).get("mean", (None, None))[0]


def _claim(text: str, holds: bool | None, measured: str, weak: bool, reason: str) -> str:
    """One verdict line. With a full-pool arm that did not learn (weak), no direction counts."""
    if holds is None:
        return f"- {text}: not measured (an arm was not run or its subset is empty)."
    if weak:
        direction = "matches" if holds else "does not match"
        return f"- {text}: inconclusive ({measured}; the direction {direction}). {reason}"
    if holds:
        return f"- {text}: reproduced ({measured})."
    return f"- {text}: NOT reproduced ({measured}). {reason}"


def _fmt_mean(arms: dict, name: str) -> str:
    value = _mean(arms, name)
    return f"{name} {value:.3f}" if value is not None else f"{name} -"


def verdicts(arms: dict, chance: dict) -> list[str]:
    """Each paper's claim against the measured means, said plainly either way; when the
    full-pool arm ends within two seed std of chance every claim is called inconclusive."""
    full = _mean(arms, "full")
    std = [arms[a]["mean"][1] or 0.0 for a in arms]
    noise = float(np.mean(std)) if std else 0.0
    weak = full is not None and full - chance["mean"] < 2 * max(noise, 0.01)
    reason = (
        f"The full-pool arm ends {(full or 0) - chance['mean']:+.3f} from chance "
        f"({chance['mean']:.3f}), within two seed std ({noise:.3f}): the tiny model has not "
        "learned the mixed synthetic task at this budget, so arms differ by noise."
        if weak
        else "Likely reason: the tiny model and the synthetic task do not reflect the paper's "
        "setting (a 7B model on real instruction data)."
    )

    def ge(a, b, factor=1.0):
        x, y = _mean(arms, a), _mean(arms, b)
        return None if x is None or y is None else x >= factor * y

    def above(a, b):
        x, y = _mean(arms, a), _mean(arms, b)
        return None if x is None or y is None else x > y

    def pair(a, b):
        return f"{_fmt_mean(arms, a)} vs {_fmt_mean(arms, b)}"

    mmssr, over_random = ge("mmssr-30", "full", 0.99), above("mmssr-30", "random-30")
    mmssr = None if mmssr is None or over_random is None else mmssr and over_random
    gdo_arms = [a for a in arms if a.startswith("gdo-") and "-" not in a[4:]]
    reductions = {a: arms[a]["reduction"][0] for a in gdo_arms}
    reached = [r for r in reductions.values() if r is not None]
    gdo = (max(reached, default=0.0) >= 2.0) if gdo_arms else None
    gdo_text = ", ".join(
        f"{a} {'never' if r is None else f'{r:.2f}x'}" for a, r in reductions.items()
    )
    claims = [
        (
            "mmSSR 30% >= 99% of full and above random 30% (mmSSR: 99.1% vs 95.8%)",
            mmssr,
            f"{pair('mmssr-30', 'full')} vs {_fmt_mean(arms, 'random-30')}",
        ),
        (
            "a GDO subset reaches the full-pool peak with >= 2x fewer samples (GDO: 14.5-19.2x)",
            gdo,
            gdo_text,
        ),
        (
            "OST top-20% above full when the pool has wrong answers (OST: +8.8)",
            above("ost-20", "full"),
            pair("ost-20", "full"),
        ),
        (
            "curriculum above reverse curriculum",
            above("gdo-temp+-curriculum", "gdo-temp+-reverse"),
            pair("gdo-temp+-curriculum", "gdo-temp+-reverse"),
        ),
        (
            "GRPO above SFT on PISM medium + hard rows (same rows, same start)",
            above("pism-mh-grpo", "pism-mh-sft"),
            pair("pism-mh-grpo", "pism-mh-sft"),
        ),
        (
            "GRPO above SFT on CMAB medium + hard rows (same rows, same start)",
            above("cmab-mh-grpo", "cmab-mh-sft"),
            pair("cmab-mh-grpo", "cmab-mh-sft"),
        ),
    ]
    return [_claim(text, holds, measured, weak, reason) for text, holds, measured in claims]


def _pm(stat, digits: int = 3, scale: float = 1.0) -> str:
    mean, std = stat
    if mean is None:
        return "-"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def markdown_table(arms: dict, chance: dict) -> str:
    categories = sorted({c for a in arms.values() for c in a["accuracy"]})
    header = [
        "arm",
        "rows",
        *categories,
        "mean",
        "% of full",
        "samples to full peak",
        "reduction",
        "select s",
        "train s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, arm in arms.items():
        reached = f" ({arm['reached_full_peak']}/{arm['seeds']})"
        cells = [
            name,
            f"{arm['rows']:.0f}" if arm["rows"] is not None else "-",
            *[_pm(arm["accuracy"].get(c, (None, None)), 2) for c in categories],
            _pm(arm["mean"]),
            _pm(arm["percent_of_full"], 1),
            _pm(arm["samples_to_full_peak"], 0) + reached,
            _pm(arm["reduction"], 2),
            _pm(arm["select_s"], 2),
            _pm(arm["train_s"], 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    chance_cells = [f"{chance.get(c, float('nan')):.2f}" for c in categories]
    blanks = ["-"] * 5
    lines.append(
        "| chance (uniform guess) | - | "
        + " | ".join(chance_cells)
        + f" | {chance['mean']:.3f} | "
        + " | ".join(blanks)
        + " |"
    )
    return "\n".join(lines)


def plot(results: dict, folder: str) -> list[str]:
    """accuracy.png (final mean accuracy per arm, seed std, chance line) and curves.png
    (mean accuracy vs samples seen, seeds averaged, full dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms, chance = results["arms"], results["chance"]
    names = list(arms)
    fig, ax = plt.subplots(figsize=(10, 4))
    means = [arms[n]["mean"][0] or 0.0 for n in names]
    stds = [arms[n]["mean"][1] or 0.0 for n in names]
    ax.bar(range(len(names)), means, yerr=stds, color="#4c72b0")
    ax.axhline(chance["mean"], color="gray", linestyle=":", label="chance")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("held-out mean accuracy")
    ax.legend()
    fig.tight_layout()
    paths = [os.path.join(folder, "accuracy.png")]
    fig.savefig(paths[0], dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in names:
        curves = [c for c in arms[name]["curves"] if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        xs = [curves[0][k][0] for k in range(length)]
        ys = [np.mean([c[k][1] for c in curves]) for k in range(length)]
        ax.plot(xs, ys, "k--" if name == "full" else "-", label=name, linewidth=1)
    ax.axhline(chance["mean"], color="gray", linestyle=":", label="chance")
    ax.set_xlabel("samples seen")
    ax.set_ylabel("held-out mean accuracy")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    paths.append(os.path.join(folder, "curves.png"))
    fig.savefig(paths[1], dpi=90)
    plt.close(fig)
    return paths


def _settings_text(settings: dict) -> str:
    from ray_jobs.synthetic_pool import CATEGORY_WEIGHTS, DEFECT_RATES

    keep = (
        "lines",
        "seeds",
        "steps",
        "batch_size",
        "learning_rate",
        "lr_schedule",
        "warmup_ratio",
        "max_grad_norm",
        "evaluations",
        "heldout_per_category",
        "grpo_steps",
        "grpo_learning_rate",
        "proxy_rows",
    )
    shown = ", ".join(f"{k} {settings[k]}" for k in keep if k in settings)
    return f"Settings: {shown}. Pool defects: {DEFECT_RATES}. Category weights: {CATEGORY_WEIGHTS}."


def _wall_text(wall: dict) -> str:
    runs = wall["invocations"]
    parts = ", ".join(f"{w['total']:.0f} s (pipeline {w['pipeline']:.0f} s)" for w in runs)
    return (
        f"Wall time: {sum(w['total'] for w in runs):.0f} s over {len(runs)} invocation(s): "
        f"{parts}; a rerun reuses finished stages and training runs."
    )


def write_outputs(cfg, results: dict) -> None:
    """OUT/results.json, OUT/quality.md, the plots; the run's report gets the section; the
    README (when configured) gets the table between its quality markers."""
    out = os.path.abspath(cfg.out)
    plot(results, out)
    text = "\n\n".join(
        [
            _settings_text(results["settings"]),
            results["table"],
            f"Difficulty labels of the scored pool: {results['labels']}.",
            "\n".join(results["verdicts"]),
            _wall_text(results["wall_s"]),
        ]
    )
    with open(os.path.join(out, "quality.md"), "w") as handle:
        handle.write(text + "\n")
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1, default=str)
    folder = os.path.join(out, "run", "quality")
    os.makedirs(folder, exist_ok=True)
    for name in ("results.json", "quality.md", "accuracy.png", "curves.png"):
        shutil.copy(os.path.join(out, name), os.path.join(folder, name))
    from ray_jobs.report import build_report

    build_report(os.path.join(out, "run"))
    if cfg.readme:
        _update_readme(cfg.readme, text, out)


def _update_readme(path: str, text: str, out: str) -> None:
    """Replace the text between the quality markers (appended when absent); plots are copied
    beside the README under quality/."""
    folder = os.path.join(os.path.dirname(os.path.abspath(path)), "quality")
    os.makedirs(folder, exist_ok=True)
    for name in ("accuracy.png", "curves.png"):
        shutil.copy(os.path.join(out, name), os.path.join(folder, name))
    section = (
        f"{BEGIN}\n{text}\n\n![final accuracy](quality/accuracy.png)\n"
        f"![curves](quality/curves.png)\n{END}"
    )
    current = open(path).read() if os.path.exists(path) else ""
    if BEGIN in current and END in current:
        pattern = re.escape(BEGIN) + ".*?" + re.escape(END)
        current = re.sub(pattern, lambda _: section, current, flags=re.S)
    else:
        current = current.rstrip() + "\n\n" + section + "\n"
    with open(path, "w") as handle:
        handle.write(current)

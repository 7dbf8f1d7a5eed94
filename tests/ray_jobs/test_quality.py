"""The selection-quality benchmark: its figures from known curves, and one tiny end-to-end run."""

from __future__ import annotations

import json
import os

import pytest

from ray_jobs.quality import QualityConfig, run_quality
from ray_jobs.quality_results import BEGIN, END, _per_seed, _update_readme, verdicts


def _metrics(folder, curve):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as handle:
        for samples, acc in curve:
            record = {
                "event": "eval",
                "samples_seen": samples,
                "accuracy_mean": acc,
                "accuracy": {"a": acc},
            }
            handle.write(json.dumps(record) + "\n")


def test_peak_match_and_percent_of_full(tmp_path):
    _metrics(tmp_path / "full", [(0, 0.1), (100, 0.3), (200, 0.5), (300, 0.4)])
    _metrics(tmp_path / "arm", [(0, 0.1), (50, 0.52), (100, 0.2)])
    full = _per_seed({"loop": {"out": str(tmp_path / "full")}, "wall_s": 1, "rows": 9}, None)
    arm = _per_seed({"loop": {"out": str(tmp_path / "arm")}, "wall_s": 1, "rows": 3}, full)
    assert arm["samples_to_full_peak"] == 50  # first evaluation at or above full's peak 0.5
    assert arm["reduction"] == pytest.approx(200 / 50)  # full's samples at its peak / arm's
    assert arm["percent_of_full"] == pytest.approx(100 * 0.2 / 0.4)  # finals: 0.2 vs 0.4


def test_verdicts_say_not_reproduced():
    def arm(mean, std=0.0, reduction=None):
        return {"mean": (mean, std), "reduction": (reduction, 0.0)}

    arms = {
        "full": arm(0.5),
        "random-30": arm(0.45),
        "mmssr-30": arm(0.40),
        "gdo-temp+": arm(0.5, reduction=3.0),
        "ost-20": arm(0.6),
    }
    lines = verdicts(arms, {"mean": 0.2})
    assert "mmSSR" in lines[0] and "NOT reproduced" in lines[0] and "mmssr-30 0.400" in lines[0]
    assert "GDO" in lines[1] and ": reproduced (gdo-temp+ 3.00x)" in lines[1]
    assert "OST" in lines[2] and ": reproduced (ost-20 0.600 vs full 0.500)" in lines[2]
    assert "not measured" in lines[3]
    # a full-pool arm within two seed std of chance makes every claim inconclusive
    arms["full"] = arm(0.21, std=0.02)
    lines = verdicts(arms, {"mean": 0.2})
    assert all("inconclusive" in line for line in lines[:3])
    assert "direction matches" in lines[2] and "does not match" in lines[0]


def test_readme_section_is_replaced(tmp_path):
    readme, out = tmp_path / "README.md", tmp_path / "out"
    out.mkdir()
    for name in ("accuracy.png", "curves.png"):
        (out / name).write_bytes(b"png")
    readme.write_text("# Benchmarks\n\nintro\n")
    _update_readme(str(readme), "first table", str(out))
    _update_readme(str(readme), "second table", str(out))
    text = readme.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "second table" in text and "first table" not in text and text.startswith("# Bench")


@pytest.mark.slow
def test_tiny_benchmark_end_to_end(ray_session, tmp_path):
    arms = ("full", "random-30", "mmssr-30", "pism-mh-grpo")
    cfg = QualityConfig(
        out=str(tmp_path / "q"),
        lines=240,
        seeds=(0,),
        arms=arms,
        steps=4,
        batch_size=4,
        evaluations=2,
        heldout_per_category=4,
        grpo_steps=2,
        proxy_rows=40,
        readme=str(tmp_path / "README.md"),
    )
    results = run_quality(cfg)
    expected = ["full", "random-30", "mmssr-30", "pism-mh-sft", "pism-mh-grpo"]  # ARMS order;
    # the GRPO arm brings the SFT arm that selects its rows
    assert list(results["arms"]) == expected
    table = results["table"].splitlines()
    assert len(table) == 2 + len(expected) + 1  # header, rule, arms, chance
    assert all(line.count("|") == table[0].count("|") for line in table)
    full = results["arms"]["full"]
    metrics = (tmp_path / "q/arms/full/s0/metrics.jsonl").read_text().splitlines()
    evals = [json.loads(x) for x in metrics if '"eval"' in x]
    assert len(evals) == 1 + cfg.evaluations  # step 0, then evenly spaced
    assert full["mean"][0] == pytest.approx(evals[-1]["accuracy_mean"])
    if full["mean"][0] > 0:  # "% of full" is undefined when the full arm scores 0
        assert full["percent_of_full"][0] == pytest.approx(100.0)
    manifest = json.load(open(tmp_path / "q/run/subsets/random-30-s0/manifest.json"))
    assert results["arms"]["random-30"]["rows"] == manifest["selected"]["rows"]
    assert 0.0 < results["chance"]["mean"] < 1.0
    assert len(results["verdicts"]) == 6
    report = (tmp_path / "q/run/report.html").read_text()
    assert "Selection-quality benchmark" in report and "curves.png" in report
    assert BEGIN in (tmp_path / "README.md").read_text()

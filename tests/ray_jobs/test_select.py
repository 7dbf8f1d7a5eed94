"""`mmcurate select` end to end on a run directory built from a synthetic descriptor table."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from ray_jobs.cli import COMMANDS
from ray_jobs.rundir import mark_complete
from ray_jobs.select import SelectJobConfig, main, run_select
from selection.common import MissingColumnsError
from selection.synthetic import descriptor_table

DEDUP = ["dup_cluster", "dup_keep"]
CLUSTERS = ["cluster", "cluster_dist", "cluster_size"]


def make_run(path, table, shards=2):
    """scored/ in `shards` shuffled shards (no dedup / cluster columns), dedup/ and clusters/."""
    scored = table.drop_columns(DEDUP + CLUSTERS)
    order = np.random.default_rng(shards).permutation(table.num_rows)
    for k, part in enumerate(np.array_split(order, shards)):
        os.makedirs(path / "scored", exist_ok=True)
        pq.write_table(scored.take(part), path / "scored" / f"part-{k:05d}.parquet")
    os.makedirs(path / "dedup")
    os.makedirs(path / "clusters")
    pq.write_table(table.select(["id", *DEDUP]), path / "dedup" / "part-00000.parquet")
    pq.write_table(table.select(["id", *CLUSTERS]), path / "clusters" / "part-00000.parquet")
    return str(path)


@pytest.fixture(scope="module")
def table():
    return descriptor_table(3000, seed=11)


def read(run, name):
    sub = pq.read_table(os.path.join(run, "subsets", name, "subset.parquet"))
    with open(os.path.join(run, "subsets", name, "manifest.json")) as handle:
        return sub, json.load(handle)


def test_registered():
    assert COMMANDS["select"] == "ray_jobs.select"


def test_gdo_subset_and_manifest(tmp_path, table, capsys):
    run = make_run(tmp_path / "run", table)
    assert (
        main(
            [
                "--run",
                run,
                "--method",
                "gdo",
                "--preset",
                "temp+",
                "--budget",
                "0.1",
                "--order",
                "curriculum",
            ]
        )
        == 0
    )
    assert "stage" in capsys.readouterr().out
    sub, man = read(run, "gdo-temp+")
    no_error = table.column("model_error").is_null().to_numpy(zero_copy_only=False)
    eligible = int((table.column("dup_keep").to_numpy(zero_copy_only=False) & no_error).sum())
    assert man["report"]["eligible_rows"] == eligible < 3000
    assert sub.column_names == ["id", "position", "stage"]
    assert sub.num_rows == int(0.1 * eligible) == man["selected"]["rows"]
    assert sub.column("position").to_pylist() == list(range(sub.num_rows))
    stages = sub.column("stage").to_pylist()
    rank = [["general", "chart", "ocr", "other"].index(s) for s in stages]
    assert rank == sorted(rank)
    keep = dict(
        zip(table.column("id").to_pylist(), table.column("dup_keep").to_pylist(), strict=True)
    )
    assert all(keep[i] for i in sub.column("id").to_pylist())
    assert man["method"] == "gdo" and man["preset"] == "temp+" and man["seed"] == 0
    assert man["pool"]["joined"] == {"dedup": True, "clusters": True}
    assert man["pool"]["fingerprint"].startswith("sha256:")
    assert man["config"]["min_video_ratio"] == 0.5 and man["order"]["order"] == "curriculum"
    assert sum(man["counts"]["media_type"].values()) == sub.num_rows
    assert man["selected"]["rows"] + man["selected"]["not_selected"] == table.num_rows
    assert "stage_counts" in man["report"]["constraints"]


def test_same_inputs_same_bytes_whatever_the_sharding(tmp_path, table):
    a = make_run(tmp_path / "a", table, shards=2)
    b = make_run(tmp_path / "b", table, shards=3)
    for run in (a, b):
        run_select(SelectJobConfig(run=run, method="mmssr", budget=0.2, order="balanced", seed=3))
    for f in ("subset.parquet", "manifest.json"):
        fa = open(os.path.join(a, "subsets", "mmssr", f), "rb").read()
        fb = open(os.path.join(b, "subsets", "mmssr", f), "rb").read()
        if f == "manifest.json":
            fa, fb = json.loads(fa), json.loads(fb)
        assert fa == fb


def test_rerun_skips_and_force_rebuilds(tmp_path, table):
    run = make_run(tmp_path / "run", table)
    first = run_select(SelectJobConfig(run=run, method="random", budget=100))
    assert first["selected"] == 100 and "skipped" not in first
    assert run_select(SelectJobConfig(run=run, method="random", budget=100))["skipped"] is True
    again = run_select(SelectJobConfig(run=run, method="random", budget=100, force=True))
    assert "skipped" not in again
    with pytest.raises(FileExistsError, match="another config"):
        run_select(SelectJobConfig(run=run, method="random", budget=200))


def test_every_method_writes_a_subset(tmp_path, table):
    run = make_run(tmp_path / "run", table)
    for method, extra in [
        ("uniform", {"multiplier": 10.0}),
        ("ost", {}),
        ("pism", {}),
        ("cmab", {"levels": ("hard",)}),
        ("full", {}),
        ("per_category", {}),
    ]:
        run_select(SelectJobConfig(run=run, method=method, **extra))
        sub, man = read(run, SelectJobConfig(run=run, method=method).subset_name)
        assert sub.num_rows == man["selected"]["rows"] > 0
    assert pq.read_table(os.path.join(run, "subsets", "ost", "flagged.parquet")).num_rows > 0
    _, plan = read(run, "pism")
    assert set(plan["counts"]["stage"]) == {"sft", "grpo"}


def test_mmssr_without_capabilities_names_them(tmp_path, table):
    run = make_run(tmp_path / "run", table.drop_columns(["cap_ocr"]))
    with pytest.raises(MissingColumnsError, match="cap_ocr"):
        run_select(SelectJobConfig(run=run, method="mmssr"))


def test_ost_manifest_says_where_the_target_set_came_from(tmp_path, table):
    from operators.ost import OneStepUtility, OstConfig, target_source
    from operators.vlm_runtime import RuntimeConfig
    from ray_jobs.score import ScoreStep, step_provenance

    config = OstConfig(RuntimeConfig(model="proxy"), pool="pool", target_pool="clean/heldout")
    step = ScoreStep("ost_utility", OneStepUtility, fn_constructor_kwargs={"config": config})
    provenance = step_provenance([ScoreStep("motion", lambda t: t), step])
    assert provenance == {"ost_target": target_source(config)}
    assert "clean held-out pool clean/heldout" in provenance["ost_target"]
    assert step_provenance([ScoreStep("motion", lambda t: t)]) == {}
    run = make_run(tmp_path / "run", table)
    mark_complete(os.path.join(run, "scored"), {"input": table.num_rows, **provenance})
    run_select(SelectJobConfig(run=run, method="ost"))
    _, manifest = read(run, "ost")
    assert manifest["ost_target"] == provenance["ost_target"]
    run_select(SelectJobConfig(run=run, method="random", budget=10))
    assert "ost_target" not in read(run, SelectJobConfig(run=run, method="random").subset_name)[1]

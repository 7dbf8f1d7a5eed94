"""`mmcurate status` on a fresh, a finished and a killed run, and the end-of-run summary."""

import os

import pytest
import yaml

from ray_jobs.recipe import load_recipe
from ray_jobs.run import run_recipe
from ray_jobs.status import load_run, main, stage_status, summary_rows

# the CPU descriptors only: no proxy, no embeddings
CPU_ONLY = {"descriptors": [], "text_embedding": False, "capabilities": "none", "ost": "none"}


def _recipe(tmp_path, pool):
    data = {
        "name": "status",
        "input": str(pool / "pool.jsonl"),
        "run": str(tmp_path / "run"),
        "num_cpus": 2,
        "ingest": {"chunk_bytes": 30000},
        "score": CPU_ONLY,
        "stages": ["ingest", "score", "dedup"],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _by_stage(rows):
    return {r["stage"]: r for r in rows}


def test_status_of_a_fresh_run_says_every_stage_would_run(tmp_path, small_pool, capsys):
    path = _recipe(tmp_path, small_pool)
    rows = _by_stage(stage_status(load_run(path)))
    for name in ("ingest", "score", "dedup"):
        assert rows[name]["done"] is False and rows[name]["rerun"] == "run"
        assert rows[name]["counts"] == {} and rows[name]["progress"] == ""
    assert rows["train"]["rerun"] == "skip (not in recipe)"
    assert main([path]) == 0
    assert "a rerun would" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no config.yaml"):
        load_run(str(tmp_path))  # a folder that is not a run directory


@pytest.mark.slow
def test_status_of_a_finished_then_a_killed_run(tmp_path, small_pool, ray_session, capsys):
    recipe = load_recipe(_recipe(tmp_path, small_pool))
    results = run_recipe(recipe)
    run = str(tmp_path / "run")
    rows = _by_stage(stage_status(load_run(run)))  # read back from RUN/config.yaml
    for name in ("ingest", "score", "dedup"):
        assert rows[name]["done"] and rows[name]["rerun"] == "skip (complete)"
        assert rows[name]["counts"] == {
            k: v for k, v in results[name].items() if k in rows[name]["counts"]
        }
        assert rows[name]["seconds"] > 0
    summary = {r["stage"]: r for r in summary_rows(list(rows.values()))}
    ingest, dedup = results["ingest"], results["dedup"]
    assert summary["ingest"]["in"] == 400 == ingest["input"]
    assert summary["ingest"]["kept"] + ingest["quarantined"] == 400
    assert summary["dedup"]["duplicates"] == dedup["removed"] > 0
    assert summary["dedup"]["kept"] == dedup["rows"] - dedup["removed"]
    assert summary["score"]["in"] == ingest["kept"]

    # What a kill during score leaves: some shards written, no markers from score on.
    scored = os.path.join(run, "scored")
    os.remove(os.path.join(run, "dedup", "_SUCCESS"))
    os.remove(os.path.join(scored, "_SUCCESS"))
    parts = sorted(n for n in os.listdir(scored) if n.endswith(".parquet"))
    os.remove(os.path.join(scored, parts[-1]))
    rows = _by_stage(stage_status(load_run(run)))
    assert rows["ingest"]["rerun"] == "skip (complete)"
    assert rows["score"]["done"] is False and rows["score"]["rerun"] == "run"
    assert rows["score"]["progress"] == f"{len(parts) - 1}/{len(parts)} shards written"
    assert rows["dedup"]["rerun"] == "run" and rows["dedup"]["counts"] == {}
    assert main([run]) == 0
    out = capsys.readouterr().out
    assert f"{len(parts) - 1}/{len(parts)} shards written" in out


def test_a_stage_that_quarantines_many_rows_says_so_once(tmp_path, small_pool, capsys):
    from ray_jobs.run import _advise

    recipe = load_recipe(_recipe(tmp_path, small_pool))
    counts = {"input": 100, "kept": 90, "quarantined": 10, "reasons": {"malformed": 10}}
    _advise(recipe, "ingest", counts)
    _advise(recipe, "ingest", counts)
    _advise(recipe, "score", {"input": 90, "kept": 89, "quarantined": 1, "reasons": {}})
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[mmcurate] note: ingest quarantined 10% (malformed 10): "
        + os.path.join(recipe.run, "quarantine", "ingest")
    ]

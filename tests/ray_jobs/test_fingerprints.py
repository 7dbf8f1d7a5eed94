"""Stale outputs: a changed recipe reruns the stage whose configuration changed and every
stage after it, naming the changed keys; the same recipe still skips finished work."""

import json
import os
import shutil

import pytest
import yaml

from ray_jobs.fingerprints import record_complete, stage_fingerprints
from ray_jobs.recipe import load_recipe
from ray_jobs.run import plan, run_recipe
from ray_jobs.rundir import MARKER, mark_complete, read_counts
from ray_jobs.stages import stage_outputs

CHEAP_SCORE = {"descriptors": [], "text_embedding": False, "capabilities": "none", "ost": "none"}
STAGES = ["ingest", "score", "dedup"]


def _recipe(tmp_path, pool, **changes):
    data = {"name": "fp", "input": str(pool), "run": str(tmp_path / "run"), "num_cpus": 2}
    data.update({"stages": STAGES, "score": CHEAP_SCORE, **changes})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(str(path))


def _complete_all(recipe):
    """Mark every stage complete with the recipe's fingerprints, as `mmcurate run` does."""
    for name, (fingerprint, config) in stage_fingerprints(recipe, STAGES).items():
        outputs = stage_outputs(recipe, name)
        for path in outputs:
            mark_complete(path, {})
        record_complete(outputs, fingerprint, config)


def _actions(recipe):
    return {k: v for k, v in plan(recipe) if k in STAGES}


def test_changed_keys_rerun_that_stage_and_every_later_one(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("{}\n")
    recipe = _recipe(tmp_path, pool)
    assert set(_actions(recipe).values()) == {"run"}
    _complete_all(recipe)
    assert set(_actions(recipe).values()) == {"skip (complete)"}

    dedup = _actions(_recipe(tmp_path, pool, dedup={"near_text": False, "partitions": 3}))
    assert dedup["ingest"] == dedup["score"] == "skip (complete)"
    assert dedup["dedup"] == "rerun (changed: dedup.near_text, dedup.partitions)"

    score = _actions(_recipe(tmp_path, pool, score={**CHEAP_SCORE, "cpu": {"frames": 4}}))
    assert score["ingest"] == "skip (complete)"
    assert score["score"] == "rerun (changed: score.cpu.frames)"
    assert score["dedup"] == "rerun (changed: upstream (an earlier stage changed))"

    pool.write_text('{"x": 1}\n')  # the input itself changed
    changed = _actions(recipe)
    assert changed["ingest"] == f"rerun (changed: input_files.{pool})"
    assert changed["score"].startswith("rerun") and changed["dedup"].startswith("rerun")


def test_a_marker_without_fingerprint_is_not_trusted(tmp_path):
    recipe = _recipe(tmp_path, tmp_path / "pool.jsonl")
    for path in stage_outputs(recipe, "ingest"):
        mark_complete(path, {})
    actions = _actions(recipe)
    assert actions["ingest"] == "rerun (changed: (no fingerprint recorded))"


@pytest.mark.slow
def test_rerun_with_a_changed_recipe_and_resume_with_the_same(ray_session, small_pool, tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(small_pool, pool)
    recipe = _recipe(tmp_path, pool / "pool.jsonl")
    first = run_recipe(recipe)
    assert set(first) == set(STAGES)
    assert run_recipe(recipe) == {}  # same recipe: everything is reused
    marker = json.loads(open(os.path.join(recipe.run, "dedup", MARKER)).read())
    assert "fingerprint" not in read_counts(os.path.join(recipe.run, "dedup"))
    assert marker["fingerprint"] == stage_fingerprints(recipe, STAGES)["dedup"][0]
    scored = os.path.join(recipe.run, "scored", "_SUCCESS")
    scored_mtime = os.stat(scored).st_mtime_ns
    changed = _recipe(tmp_path, pool / "pool.jsonl", dedup={"near_text": False})
    second = run_recipe(changed)
    assert set(second) == {"dedup"}  # ingest and score are reused
    assert os.stat(scored).st_mtime_ns == scored_mtime
    marker = json.loads(open(os.path.join(recipe.run, "dedup", MARKER)).read())
    assert "fingerprint" not in read_counts(os.path.join(recipe.run, "dedup"))
    assert marker["fingerprint"] == stage_fingerprints(changed, STAGES)["dedup"][0]
    assert marker["stage_config"]["dedup.near_text"] is False
    assert run_recipe(changed) == {}

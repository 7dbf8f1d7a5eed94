"""The streaming score stage on the 400-line synthetic pool: descriptors, quarantine, resume."""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.schema import ROW_SCHEMA
from ray_jobs.ingest import IngestConfig, ingest
from ray_jobs.rundir import read_counts
from ray_jobs.score import ScoreConfig, ScoreStep, score, score_steps
from ray_jobs.synthetic_pool import _spec


class AnswerChars:
    """A stand-in for a model descriptor: a callable class, run by an actor pool."""

    def __init__(self, column: str):
        self.column = column  # loaded once per actor, as a model would be

    def __call__(self, batch: pa.Table) -> pa.Table:
        lengths = [len(a or "") for a in batch.column("answer").to_pylist()]
        return batch.append_column(self.column, pa.array(lengths, pa.int64()))


def _steps(run: str) -> list[ScoreStep]:
    extra = ScoreStep(
        "answer_chars", AnswerChars, fn_constructor_kwargs={"column": "answer_chars"}, actors=(1, 1)
    )
    return score_steps(ScoreConfig(run)) + [extra]


@pytest.fixture(scope="module")
def scored_run(ray_session, small_pool, tmp_path_factory):
    run = tmp_path_factory.mktemp("score_run")
    pool_copy = tmp_path_factory.mktemp("pool_copy")
    shutil.copytree(small_pool, pool_copy, dirs_exist_ok=True)
    ingest(IngestConfig(str(pool_copy / "pool.jsonl"), str(run)))
    pool = pq.read_table(run / "pool")
    # Break one video after ingest: the score stage must quarantine it, not crash.
    broken = next(r for r in pool.to_pylist() if r["media_type"] == "video")
    with open(broken["media"][0], "wb") as handle:
        handle.write(b"not a video" * 10)
    counts = score(ScoreConfig(str(run), shards_per_group=2), _steps(str(run)))
    return run, pool, broken, counts


def test_counts_reconcile_and_corrupt_video_is_quarantined(scored_run):
    run, pool, broken, counts = scored_run
    scored = pq.read_table(run / "scored")
    quarantine = pq.read_table(run / "quarantine" / "score")
    assert counts["input"] == pool.num_rows == scored.num_rows + quarantine.num_rows
    assert quarantine.column("id").to_pylist() == [broken["id"]]
    assert quarantine.column("reason").to_pylist() == ["undecodable_media"]
    assert counts == read_counts(str(run / "scored"))
    # One output shard per input shard, every input column kept.
    assert sorted(os.listdir(run / "pool")) == sorted(os.listdir(run / "scored"))
    assert set(ROW_SCHEMA.names) <= set(scored.column_names)
    # The actor-pool step ran after the CPU descriptors, on every kept row.
    answers = scored.column("answer").to_pylist()
    assert scored.column("answer_chars").to_pylist() == [len(a or "") for a in answers]


def test_descriptors_follow_ground_truth(scored_run, small_pool):
    run, *_ = scored_run
    truth = {r["id"]: r for r in pq.read_table(small_pool / "ground_truth.parquet").to_pylist()}
    rows = pq.read_table(run / "scored").to_pylist()

    def direction(row_id: str) -> str:
        source = truth[row_id]["dup_of"] or row_id  # duplicates reuse their original's video
        return _spec(0, int(source.split("-")[1]))["direction"]

    videos = [r for r in rows if r["media_type"] == "video"]
    moving = [r["motion"] for r in videos if direction(r["id"]) != "still"]
    still = [r["motion"] for r in videos if direction(r["id"]) == "still"]
    assert moving and still
    images = [r for r in rows if r["media_type"] == "image"]
    assert min(moving) > 5 * max(still)
    assert all(r["motion"] == 0.0 and r["frame_div"] == 0.0 for r in images)
    assert all(r["width"] in (64, 80) and r["num_frames"] == 1 for r in images)
    assert all(8 <= r["num_frames"] <= 16 and r["fps"] == 8.0 for r in videos)


def test_rerun_resumes_per_shard(scored_run):
    run, _, _, counts = scored_run
    names = sorted(n for n in os.listdir(run / "scored") if n.endswith(".parquet"))
    first = names[0]
    before = pq.read_table(run / "scored" / first)
    mtimes = {n: os.path.getmtime(run / "scored" / n) for n in names}
    os.remove(run / "scored" / first)
    os.remove(run / "scored" / "_SUCCESS")
    again = score(ScoreConfig(str(run)), _steps(str(run)))
    assert again == counts
    assert pq.read_table(run / "scored" / first).equals(before)
    for name, mtime in mtimes.items():
        if name != first:
            assert os.path.getmtime(run / "scored" / name) == mtime  # not rewritten


@pytest.mark.slow
def test_score_command_runs_the_runs_own_score_stage(ray_session, small_pool, tmp_path):
    """`mmcurate score --run RUN` reads RUN/config.yaml and computes what the score stage of
    `mmcurate run` computes (here: CPU descriptors + rule styles), not CPU descriptors only."""
    import yaml

    from ray_jobs.recipe import load_recipe
    from ray_jobs.run import _write_resolved
    from ray_jobs.score import main
    from ray_jobs.stages import score_steps_for

    run = tmp_path / "run"
    ingest(IngestConfig(str(small_pool / "pool.jsonl"), str(run)))
    with pytest.raises(SystemExit, match="--cpu-only"):
        main(["--run", str(run)])  # no resolved recipe: no silent CPU-only scoring
    score_section = {
        "descriptors": [],
        "ost": "none",
        "text_embedding": False,
        "capabilities": "none",
        "styles": "rules",
    }
    recipe_file = tmp_path / "recipe.yaml"
    spec = {"name": "r", "input": str(small_pool / "pool.jsonl"), "run": str(run)}
    recipe_file.write_text(yaml.safe_dump(spec | {"score": score_section}))
    recipe = load_recipe(str(recipe_file))
    _write_resolved(recipe)
    assert main(["--run", str(run)]) == 0
    scored = pq.read_table(run / "scored")
    stage_names = [s.name for s in score_steps_for(recipe)]
    assert stage_names == ["cpu_descriptors", "styles"]
    assert "styles" in scored.column_names and "frame_div" in scored.column_names
    assert scored.column("styles").null_count == 0
    with pytest.raises(SystemExit, match="--cpu-only"):
        main(["--run", str(run), "--no-motion"])

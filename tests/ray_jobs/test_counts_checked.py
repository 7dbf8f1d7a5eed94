"""Counts are checked, not constructed: each shard records the rows it read from its source,
and a stage whose kept + quarantined disagree with that (a step dropping a row, a shard
rewritten short) fails, naming the shard and the numbers."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_jobs.ingest import IngestConfig, ingest
from ray_jobs.rundir import finish_sharded_stage
from ray_jobs.score import ScoreConfig, ScoreStep, score


def _drop_first_row(batch: pa.Table) -> pa.Table:
    return batch.slice(1)


@pytest.fixture(scope="module")
def ingested(ray_session, small_pool, tmp_path_factory):
    run = tmp_path_factory.mktemp("counts_run")
    counts = ingest(IngestConfig(str(small_pool / "pool.jsonl"), str(run), chunk_bytes=40_000))
    return run, counts


def test_ingest_counts_are_the_lines_read(ingested, small_pool):
    run, counts = ingested
    lines = (small_pool / "pool.jsonl").read_bytes().count(b"\n")
    assert counts["input"] == lines == counts["kept"] + counts["quarantined"]


def test_a_shard_written_short_fails_the_stage_naming_it(ingested, tmp_path):
    run, counts = ingested
    names = sorted(p.name for p in (run / "pool").glob("part-*.parquet"))
    pool, quarantine = tmp_path / "pool", tmp_path / "quarantine"
    pool.mkdir(), quarantine.mkdir()
    for name in names:
        pq.write_table(pq.read_table(run / "pool" / name), pool / name)
        bad = pq.read_table(run / "quarantine" / "ingest" / name)
        pq.write_table(bad, quarantine / name)
    assert finish_sharded_stage(str(pool), str(quarantine), names)["input"] == counts["input"]
    short = pq.read_table(pool / names[1])
    pq.write_table(short.slice(1), pool / names[1])
    read = short.num_rows + pq.read_metadata(quarantine / names[1]).num_rows
    message = f"{names[1]}: read {read} rows from its source, but wrote {short.num_rows - 1} kept"
    with pytest.raises(RuntimeError, match=message):
        finish_sharded_stage(str(pool), str(quarantine), names)


def test_a_score_step_that_drops_a_row_fails_the_stage(ingested, tmp_path):
    run, _ = ingested
    step = ScoreStep("drops_a_row", _drop_first_row, batch_size=1000)
    config = ScoreConfig(str(tmp_path), input=str(run / "pool"), shards_per_group=1)
    with pytest.raises(RuntimeError, match=r"score shard part-00000.parquet: read \d+ input rows"):
        score(config, [step])

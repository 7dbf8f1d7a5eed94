import os

import pyarrow.parquet as pq

from ray_jobs.ingest import IngestConfig, ingest
from ray_jobs.synth import synthesize

BAD = {"corrupt_media", "missing_media", "malformed", "path_escape"}


def _line(origin):
    return int(origin.rsplit(":", 1)[1])


def test_ingest_reconciles_with_ground_truth(ray_session, tmp_path):
    pool = tmp_path / "pool"
    synthesize(2000, str(pool), seed=3, parallel=False)
    run = tmp_path / "run"
    counts = ingest(IngestConfig(str(pool / "pool.jsonl"), str(run)))
    truth = pq.read_table(pool / "ground_truth.parquet").to_pylist()
    kept = pq.read_table(run / "pool").to_pylist()
    quarantined = pq.read_table(run / "quarantine" / "ingest").to_pylist()
    assert counts["input"] == 2000 == len(kept) + len(quarantined)
    assert counts["kept"] == len(kept) and counts["quarantined"] == len(quarantined)
    by_line = {_line(q["origin"]): q for q in quarantined}
    for t in truth:
        if t["defect"] in BAD:
            assert by_line[t["line"]]["reason"] == t["defect"], t
            assert by_line[t["line"]]["error"] and by_line[t["line"]]["raw"]
        else:
            assert t["line"] not in by_line, (t, by_line.get(t["line"]))
    assert {t["defect"] for t in truth} >= BAD
    assert len({r["id"] for r in kept}) == len(kept)
    assert counts["reasons"] == {d: sum(t["defect"] == d for t in truth) for d in sorted(BAD)}


def test_ingest_resumes_missing_shards_and_skips_when_complete(ray_session, tmp_path,
                                                                small_pool):
    run = tmp_path / "run"
    config = IngestConfig(str(small_pool / "pool.jsonl"), str(run))
    first = ingest(config)
    assert os.path.exists(run / "pool" / "_SUCCESS")
    shards = sorted(n for n in os.listdir(run / "pool") if n.startswith("part-"))
    assert len(shards) >= 2
    before = pq.read_table(run / "pool")
    os.remove(run / "pool" / "_SUCCESS")
    os.remove(run / "pool" / shards[0])
    assert ingest(config) == first
    assert pq.read_table(run / "pool").equals(before)
    mtime = os.path.getmtime(run / "pool" / shards[1])
    assert ingest(config) == first
    assert os.path.getmtime(run / "pool" / shards[1]) == mtime

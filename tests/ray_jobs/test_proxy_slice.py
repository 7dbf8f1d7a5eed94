from ray_jobs.ingest import IngestConfig, ingest
from ray_jobs.proxy import slice_pool
from training.warmup import WarmupConfig


def test_warmup_slice_is_reproducible_and_sized(ray_session, tmp_path, small_pool):
    run = tmp_path / "run"
    counts = ingest(IngestConfig(str(small_pool / "pool.jsonl"), str(run), chunk_bytes=20000))
    config = WarmupConfig(base="", fraction=0.3, max_rows=1000)
    first = sorted(slice_pool(str(run), config, seed=3).to_pandas()["id"])
    again = sorted(slice_pool(str(run), config, seed=3).to_pandas()["id"])
    other = sorted(slice_pool(str(run), config, seed=4).to_pandas()["id"])
    assert first == again and first != other
    assert 0.2 * counts["kept"] < len(first) < 0.4 * counts["kept"]
    capped = slice_pool(str(run), WarmupConfig(base="", fraction=0.3, max_rows=25), seed=3)
    assert sorted(capped.to_pandas()["id"]) == sorted(
        slice_pool(str(run), WarmupConfig(base="", fraction=0.3, max_rows=25), seed=3).to_pandas()[
            "id"
        ]
    )
    assert capped.count() == 25

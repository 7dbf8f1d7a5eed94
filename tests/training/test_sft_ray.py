"""SFT under Ray Train (2 CPU workers, gloo): the manifest order reaches the optimizer step by
step, a stopped run resumes from its Ray checkpoint without repeating or skipping a sample,
and 2 workers x 4 rows give the same weights as 1 process x 8 rows."""

from __future__ import annotations

import dataclasses
import json

import pyarrow.parquet as pq

from training.data import ordered_rows
from training.sft import SftConfig, run_sft, train_loop_per_worker


def _weights(path):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    return model.state_dict()


def _steps(folder, rank):
    return [json.loads(x) for x in open(folder / "steps" / f"rank-{rank}.jsonl")]


def test_two_workers_keep_order_resume_and_match_one_process(
    ray_session, micro_model, train_run, pool_rows, subset_writer, tmp_path
):
    ids = pool_rows.column("id").to_pylist()[40:64]
    ids = ids[1::2] + ids[0::2]  # an order unlike the pool's
    subset_writer(train_run, "odd-even", ids)
    table, _ = ordered_rows(train_run, "odd-even")
    pq.write_table(table, tmp_path / "rows.parquet")
    config = SftConfig(
        model=micro_model,
        rows=str(tmp_path / "rows.parquet"),
        out=str(tmp_path / "ray"),
        batch_size=8,
        learning_rate=3e-3,
        eval_every=8,
        record_ids=True,
        stop_after_steps=1,
    )

    first = run_sft(config, num_workers=2, name="order")
    assert first.metrics["step"] == 1 and first.checkpoint is not None
    second = run_sft(dataclasses.replace(config, stop_after_steps=0), num_workers=2, name="order")
    assert second.metrics == {**second.metrics, "step": 3, "samples_seen": 24, "skipped": 0}

    ranks = [_steps(tmp_path / "ray", r) for r in (0, 1)]
    assert [s["step"] for s in ranks[0]] == [s["step"] for s in ranks[1]] == [0, 1, 2]
    for step in range(3):
        got = ranks[0][step]["ids"] + ranks[1][step]["ids"]
        assert sorted(got) == sorted(ids[8 * step : 8 * step + 8])  # this step's batch
        assert ranks[0][step]["ids"] == ids[8 * step : 8 * step + 8 : 2]  # rank-strided

    local = dataclasses.replace(config, out=str(tmp_path / "local"), stop_after_steps=0)
    train_loop_per_worker(dataclasses.asdict(local))
    a, b = _weights(tmp_path / "ray" / "model"), _weights(tmp_path / "local" / "model")
    # Reduction order differs (all-reduce of two halves vs one batch): float noise ~2e-5.
    # A wrong order or a missed sample moves weights by ~lr = 3e-3 per Adam step.
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-4, worst

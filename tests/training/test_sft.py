"""SFT without Ray: the order function, the loss, learning, resume and LoRA (one process)."""

from __future__ import annotations

import dataclasses
import json
import os

import pyarrow.parquet as pq
import pytest
import torch

from training.data import ordered_rows, step_rows
from training.sft import SftConfig, learning_rate_at, per_sample_nll, train_loop_per_worker


@pytest.mark.parametrize("num_rows,batch,world", [(10, 4, 2), (37, 8, 4), (5, 3, 1), (9, 6, 3)])
def test_step_rows_partition_each_global_batch_in_order(num_rows, batch, world):
    seen = []
    for step in range(-(-num_rows // batch)):
        parts = [step_rows(num_rows, step, batch // world, r, world) for r in range(world)]
        union = sorted(i for p in parts for i in p)
        assert union == list(range(step * batch, min((step + 1) * batch, num_rows)))
        seen += union
    assert seen == list(range(num_rows))


def test_learning_rate_schedule_warms_up_then_decays():
    cfg = SftConfig(model="m", rows="r", out="o", learning_rate=2e-3, warmup_ratio=0.05)
    total = 100  # 5 warm-up steps
    cosine = [learning_rate_at(s, total, cfg) for s in range(total)]
    assert cosine[:6] == pytest.approx([2e-3 * k / 6 for k in range(1, 6)] + [2e-3])
    assert all(
        a >= b for a, b in zip(cosine[5:-1], cosine[6:], strict=True)
    )  # falls after the peak
    assert cosine[5 + 95 // 2] == pytest.approx(1e-3, rel=0.05)  # half way down: half the peak
    assert 0 < cosine[-1] < 1e-5
    linear = [
        learning_rate_at(s, total, dataclasses.replace(cfg, lr_schedule="linear"))
        for s in range(total)
    ]
    assert linear[5] == 2e-3 and linear[-1] == pytest.approx(2e-3 / 95)
    constant = dataclasses.replace(cfg, lr_schedule="constant", warmup_ratio=0.0)
    assert {learning_rate_at(s, total, constant) for s in range(total)} == {2e-3}
    with pytest.raises(ValueError, match="lr_schedule"):
        learning_rate_at(50, total, dataclasses.replace(cfg, lr_schedule="step"))


def test_per_sample_nll_matches_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, 2, 6, 0]])
    logp = torch.log_softmax(logits, -1)
    first = -(logp[0, 1, 3] + logp[0, 2, 4]) / 2
    second = -(logp[1, 0, 1] + logp[1, 1, 2] + logp[1, 2, 6] + logp[1, 3, 0]) / 4
    assert torch.allclose(per_sample_nll(logits, labels), torch.stack([first, second]))


@pytest.fixture(scope="module")
def sft_rows(train_run, tmp_path_factory, pool_rows):
    from tests.training.conftest import write_subset

    ids = pool_rows.column("id").to_pylist()[:24][::-1]  # a curriculum: reversed pool order
    write_subset(train_run, "rev24", ids)
    table, counts = ordered_rows(train_run, "rev24")
    assert table.column("id").to_pylist() == ids and counts["train"] == 24
    folder = tmp_path_factory.mktemp("sftrows")
    pq.write_table(table, folder / "rows.parquet")
    pq.write_table(table.slice(0, 8), folder / "heldout.parquet")
    return str(folder / "rows.parquet"), str(folder / "heldout.parquet"), ids


def _config(micro_model, sft_rows, out, **kw) -> SftConfig:
    rows, heldout, _ = sft_rows
    base = dict(
        model=micro_model,
        rows=rows,
        out=str(out),
        heldout=heldout,
        batch_size=8,
        learning_rate=3e-3,
        epochs=2,
        eval_every=16,
        record_ids=True,
    )
    return SftConfig(**{**base, **kw})


def _weights(path):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_sft_learns_keeps_order_and_resumes_exactly(micro_model, sft_rows, tmp_path):
    _, _, ids = sft_rows
    whole = _config(micro_model, sft_rows, tmp_path / "whole")
    progress = train_loop_per_worker(dataclasses.asdict(whole))
    assert progress == {**progress, "step": 6, "samples_seen": 48, "skipped": 0}
    evals = [json.loads(x) for x in open(tmp_path / "whole" / "metrics.jsonl")]
    assert [e["samples_seen"] for e in evals] == [0, 16, 32, 48]
    assert evals[-1]["heldout_loss"] < evals[0]["heldout_loss"] - 0.5  # it learns
    steps = [json.loads(x) for x in open(tmp_path / "whole" / "steps" / "rank-0.jsonl")]
    assert [i for s in steps for i in s["ids"]] == ids + ids  # two epochs in manifest order

    # Killed after 2 steps (stop_after_steps), then rerun: the same ids, the same weights.
    parted = _config(micro_model, sft_rows, tmp_path / "parted", stop_after_steps=2)
    assert train_loop_per_worker(dataclasses.asdict(parted))["step"] == 2
    resumed = dataclasses.replace(parted, stop_after_steps=0)
    assert train_loop_per_worker(dataclasses.asdict(resumed))["step"] == 6
    steps = [json.loads(x) for x in open(tmp_path / "parted" / "steps" / "rank-0.jsonl")]
    assert [s["step"] for s in steps] == list(range(6))
    assert [i for s in steps for i in s["ids"]] == ids + ids
    parted_log = [json.loads(x) for x in open(tmp_path / "parted" / "metrics.jsonl")]
    assert [e["samples_seen"] for e in parted_log if e["event"] == "eval"] == [0, 16, 32, 48]
    resumes = [e for e in parted_log if e["event"] == "resume"]
    assert resumes == [{"event": "resume", "step": 2, "samples_seen": 16}]
    a, b = _weights(tmp_path / "whole" / "model"), _weights(tmp_path / "parted" / "model")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    base = _weights(micro_model)
    assert any(not torch.equal(base[k], a[k]) for k in a)


def test_lora_trains_adapters_and_saves_merged_model(micro_model, sft_rows, tmp_path):
    config = _config(micro_model, sft_rows, tmp_path, lora_rank=4, epochs=1, heldout="")
    progress = train_loop_per_worker(dataclasses.asdict(config))
    assert progress["step"] == 3 and progress["loss"] > 0
    base, merged = _weights(micro_model), _weights(tmp_path / "model")
    assert set(base) == set(merged)  # merged back into the plain architecture
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert changed and all("language_model" in k and "proj" in k for k in changed)
    assert not os.path.exists(tmp_path / "metrics.jsonl")  # no held-out rows, no evaluation

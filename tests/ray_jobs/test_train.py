"""`mmcurate train` / `mmcurate eval`: config parsing, the held-out split, and the
hierarchical plan end to end (SFT on easy + medium, GRPO on medium + hard) on local Ray."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_jobs.config_loading import ConfigError
from ray_jobs.train import parse, prepare
from tests.training import conftest as training_fixtures
from training.data import is_heldout

# The training tests' fixtures (a micro Qwen2-VL on disk, the small pool's rows), shared here.
micro_model = training_fixtures.micro_model
pool_rows = training_fixtures.pool_rows
write_subset = training_fixtures.write_subset
LEVELS = ("easy", "medium", "hard", "unsolved")


@pytest.fixture
def scored_run(tmp_path, pool_rows):
    """A run whose scored/ rows carry a pism_label (cycling through the four levels)."""
    rows = pool_rows.slice(0, 60)
    labels = [LEVELS[k % 4] for k in range(rows.num_rows)]
    os.makedirs(tmp_path / "scored")
    pq.write_table(
        rows.append_column("pism_label", pa.array(labels)),
        tmp_path / "scored" / "part-00000.parquet",
    )
    return tmp_path, rows.column("id").to_pylist()


def test_cli_config_nests_sections_and_rejects_unknown_keys(tmp_path):
    (tmp_path / "c.yaml").write_text("sft:\n  epochs: 3\n  lora_rank: 8\ngrpo:\n  beta: 0.04\n")
    config, dry = parse(
        [
            "--run",
            "R",
            "--subset",
            "S",
            "--algo",
            "hierarchical",
            "--config",
            str(tmp_path / "c.yaml"),
            "--workers",
            "4",
            "--dry-run",
        ]
    )
    assert dry and config.num_workers == 4 and config.algo == "hierarchical"
    assert (config.sft.epochs, config.sft.lora_rank, config.grpo.beta) == (3, 8, 0.04)
    assert config.grpo.num_generations == 8 and config.grpo.temperature == 1.0  # paper defaults
    (tmp_path / "bad.yaml").write_text("sft:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="sft.*epoch"):
        parse(["--run", "R", "--subset", "S", "--config", str(tmp_path / "bad.yaml")])


def test_prepare_holds_out_a_hash_bucket_and_keeps_order(scored_run):
    run, ids = scored_run
    order = ids[::-1] + ["not-in-pool"]
    write_subset(str(run), "rev", order)
    config, _ = parse(["--run", str(run), "--subset", "rev"])
    counts = prepare(config)
    rows = pq.read_table(run / "train" / "rev" / "rows.parquet")
    held = pq.read_table(run / "train" / "rev" / "heldout.parquet")
    kept = [i for i in ids[::-1] if not is_heldout(i, 0.05)]
    assert rows.column("id").to_pylist() == kept  # the subset's order, held-out ids removed
    assert rows.column("pism_label").to_pylist()[0] in LEVELS
    assert counts["missing"] == 1 and counts["train"] + counts["heldout"] == len(ids)
    assert counts["heldout"] == held.num_rows > 0
    assert all(is_heldout(i, 0.05) for i in held.column("id").to_pylist())


@pytest.mark.slow
def test_hierarchical_plan_end_to_end(ray_session, scored_run, micro_model):
    from ray_jobs.cli import main as cli
    from training.evaluate import read_metrics

    run, ids = scored_run
    write_subset(str(run), "plan", ids)
    config = run / "plan.yaml"
    config.write_text(
        "heldout_fraction: 0.2\nsft:\n  batch_size: 8\n  eval_every: 16\n"
        "grpo:\n  max_steps: 2\n  num_generations: 4\n  prompts_per_step: 1\n"
        "  eval_every: 2\n"
    )
    args = [
        "--run",
        str(run),
        "--subset",
        "plan",
        "--algo",
        "hierarchical",
        "--model",
        micro_model,
        "--config",
        str(config),
    ]
    assert cli(["train", *args]) == 0
    out = run / "train" / "plan"
    sft_ids = pq.read_table(out / "sft" / "rows.parquet").column("id").to_pylist()
    grpo_rows = pq.read_table(out / "grpo" / "rows.parquet")
    assert set(pq.read_table(out / "sft" / "rows.parquet").column("pism_label").to_pylist()) <= {
        "easy",
        "medium",
    }
    assert set(grpo_rows.column("pism_label").to_pylist()) <= {"medium", "hard"}
    assert sft_ids == [i for i in ids if i in set(sft_ids)]  # order kept within the stage
    records = read_metrics(str(out / "metrics.jsonl"))
    split = [r for r in records if r["event"] == "heldout_split"]
    assert len(split) == 1 and split[0]["source"].startswith("hash split (0.2 of ids)")
    assert split[0]["after_dedup"] is False and split[0]["rows"] > 0  # no dedup/ in this run
    records = [r for r in records if r["event"] != "heldout_split"]
    stages = [r["stage"] for r in records]
    assert stages == sorted(stages, key=("sft", "grpo").index) and "grpo" in stages
    seen = [r["samples_seen"] for r in records if r["event"] == "eval"]
    assert seen == sorted(seen)  # GRPO's samples continue SFT's
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "hierarchical" and (out / "model" / "config.json").exists()
    assert cli(["train", *args]) == 0  # complete: skipped
    assert cli(["eval", "--run", str(run), "--subset", "plan"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["heldout_rows"] > 0 and result["summary"]["evaluations"] == len(seen)


def test_hash_split_is_taken_after_dedup_without_training_duplicates_or_flagged(scored_run):
    """Without --heldout the held-out bucket drops rows dedup dropped, rows duplicating a
    training row of the subset and rows a selection flagged, and says so."""
    run, ids = scored_run
    held = [i for i in ids if is_heldout(i, 0.05)]
    train_ids = [i for i in ids if not is_heldout(i, 0.05)]
    assert len(held) >= 3
    cluster = {i: k for k, i in enumerate(ids)}
    cluster[held[0]] = cluster[train_ids[0]]  # a near-copy of a training row
    keep = {i: i != held[1] for i in ids}  # dedup dropped this one
    os.makedirs(run / "dedup")
    pq.write_table(
        pa.table(
            {
                "id": ids,
                "dup_cluster": [cluster[i] for i in ids],
                "dup_keep": [keep[i] for i in ids],
            }
        ),
        run / "dedup" / "part-00000.parquet",
    )
    write_subset(str(run), "all", ids)
    os.makedirs(run / "subsets" / "ost")
    flagged = pa.table({"id": [held[2]], "ost_utility": [-3.0]})
    pq.write_table(flagged, run / "subsets" / "ost" / "flagged.parquet")
    config, _ = parse(["--run", str(run), "--subset", "all"])
    counts = prepare(config)
    got = pq.read_table(run / "train" / "all" / "heldout.parquet").column("id").to_pylist()
    assert got == held[3:]
    split = counts["heldout_split"]
    assert split["after_dedup"] is True and split["rows"] == len(held) - 3
    assert split["excluded"] == {
        "dup_keep_false": 1,
        "duplicate_of_training": 1,
        "flagged": 1,
        "model_error": 0,
    }

"""The train stage on an object-store run (a real S3 server, as in test_object_store.py).

A run whose scored rows (and their media) are in the bucket goes through select -> train
(SFT, 2 workers, from a model given by URI) and is compared with a local run on the same rows:
the same files under RUN/train/SUBSET, the same rows.parquet / heldout.parquet (media paths
taken relative to their roots), the same evaluations (steps, samples, accuracies) and final
weights. The remote train stage is interrupted after step 2 (its `_SUCCESS` and summary
removed, a log line written after the checkpoint left behind, as a killed job leaves them) and
resumes from Ray Train's checkpoint in the bucket without a duplicated or stale line.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from operators import storage
from ray_jobs.recipe import load_recipe
from ray_jobs.run import plan, run_recipe
from tests.ray_jobs import test_object_store as s3_fixtures
from tests.training import conftest as training_fixtures
from training.evaluate import append_metrics, read_metrics, truncate_metrics

torch.set_num_threads(1)
s3 = s3_fixtures.s3
micro_model = training_fixtures.micro_model
pool_rows = training_fixtures.pool_rows
SUBSET, BATCH = "random", 8


def _upload_model(local: str, uri: str) -> str:
    storage.upload_dir(local, uri)
    return uri


def _write_scored(run: str, rows: pa.Table) -> None:
    storage.write_parquet(rows, storage.join(run, "scored", "part-00000.parquet"))
    storage.write_text(storage.join(run, "scored", "_SUCCESS"), "{}")


@pytest.fixture(scope="module")
def runs(s3, pool_rows, small_pool, tmp_path_factory):
    """(local run, remote run, media roots): the same 48 rows in scored/ of both; the remote
    rows' media are objects in the bucket."""
    rows = pool_rows.slice(0, 48)
    root = os.path.realpath(small_pool)
    remote_root = storage.join(s3, "pools", "small")
    remote_media = []
    for paths in rows["media"].to_pylist():
        keys = [os.path.relpath(os.path.realpath(p), root).replace(os.sep, "/") for p in paths]
        for path, key in zip(paths, keys, strict=True):
            with open(path, "rb") as handle:
                storage.write_bytes(storage.join(remote_root, key), handle.read())
        remote_media.append([storage.join(remote_root, k) for k in keys])
    media_type = rows.schema.field("media").type
    index = rows.column_names.index("media")
    remote_rows = rows.set_column(index, "media", pa.array(remote_media, media_type))
    local_run = str(tmp_path_factory.mktemp("train-local") / "run")
    remote_run = storage.join(s3, "runs", "train")
    _write_scored(local_run, rows)
    _write_scored(remote_run, remote_rows)
    return local_run, remote_run, {local_run: root, remote_run: remote_root}


def _recipe(path, run: str, model: str, **sft) -> object:
    data = {
        "name": "train-s3",
        "input": storage.join(run, "unused.jsonl"),
        "run": run,
        "num_cpus": 2,
        "stages": ["select", "train"],
        "subsets": [{"method": "random", "budget": 40}],
        "train": [
            {
                "subset": SUBSET,
                "algo": "sft",
                "model": model,
                "num_workers": 2,
                "heldout_fraction": 0.2,
                "sft": {"batch_size": BATCH, "eval_every": BATCH, **sft},
            }
        ],
    }
    path.write_text(yaml.safe_dump(data))
    return load_recipe(str(path))


def _relative_media(table: pa.Table, root: str) -> pa.Table:
    media = [[p[len(root) :].lstrip("/") for p in ps] for ps in table["media"].to_pylist()]
    return table.set_column(table.column_names.index("media"), "media", [media])


def _evals(run: str) -> list[dict]:
    path = storage.join(run, "train", SUBSET, "metrics.jsonl")
    return [r for r in read_metrics(path) if r["event"] == "eval"]


def _weights(model_dir: str) -> dict:
    from transformers import AutoModelForImageTextToText

    local = storage.local_copy(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(local, local_files_only=True)
    return model.state_dict()


@pytest.mark.slow
def test_train_on_s3_resumes_from_the_bucket_and_equals_local_run(
    s3, runs, micro_model, tmp_path, monkeypatch
):
    local_run, remote_run, roots = runs
    monkeypatch.chdir(tmp_path)  # a remote path written locally would show up here
    model_uri = _upload_model(micro_model, storage.join(s3, "models", "micro"))
    local = run_recipe(_recipe(tmp_path / "local.yaml", local_run, micro_model))
    assert local["train"]["runs"] == 1

    # Interrupted: the job stops after the checkpoint of step 2; a killed job would leave
    # no summary or marker, and possibly a log line written after that checkpoint.
    remote_out = storage.join(remote_run, "train", SUBSET)
    run_recipe(_recipe(tmp_path / "stop.yaml", remote_run, model_uri, stop_after_steps=2))
    for name in ("_SUCCESS", "summary.json"):
        storage.remove(storage.join(remote_out, name))
    assert not storage.exists(storage.join(remote_out, "model"))
    stale = {"event": "eval", "step": 3, "samples_seen": 3 * BATCH, "accuracy_mean": -1.0}
    append_metrics(storage.join(remote_out, "metrics.jsonl"), stale)
    recipe = _recipe(tmp_path / "remote.yaml", remote_run, model_uri)
    actions = dict(plan(recipe))
    assert (actions["select"], actions["train"]) == ("skip (complete)", "run")
    remote = run_recipe(recipe)
    assert sorted(os.listdir(tmp_path)) == ["local.yaml", "remote.yaml", "stop.yaml"]

    # The same files under RUN/train/SUBSET; Ray Train's run state and checkpoints in the bucket.
    local_out = os.path.join(local_run, "train", SUBSET)
    assert storage.listdir(remote_out) == sorted(os.listdir(local_out))
    experiment = storage.join(remote_out, "ray", f"{SUBSET}-sft-sft")
    assert "checkpoint_manager_snapshot.json" in storage.listdir(experiment)
    assert any(n.startswith("checkpoint_") for n in storage.listdir(experiment))
    for name in ("rows.parquet", "heldout.parquet"):
        mine = storage.read_parquet(storage.join(remote_out, name))
        theirs = pq.read_table(os.path.join(local_out, name))
        mine = _relative_media(mine, roots[remote_run])
        theirs = _relative_media(theirs, roots[local_run])
        assert mine.num_rows > 0 and mine.equals(theirs), name

    # Each evaluation once, the stale line gone, one resume record at the checkpoint.
    records = read_metrics(storage.join(remote_out, "metrics.jsonl"))
    resumes = [r for r in records if r["event"] == "resume"]
    assert resumes == [{"event": "resume", "step": 2, "samples_seen": 2 * BATCH}]
    steps = math.ceil(local["train"]["per_run"][SUBSET]["counts"]["train"] / BATCH)
    assert steps > 3  # the run went on after the step-2 checkpoint
    mine, theirs = _evals(remote_run), _evals(local_run)
    assert [r["step"] for r in mine] == [r["step"] for r in theirs] == list(range(steps + 1))
    for a, b in zip(mine, theirs, strict=True):
        assert a["samples_seen"] == b["samples_seen"]
        # Same rows, order, seeds and 2-worker all-reduce: the accuracies are equal; the
        # losses agree to float noise (the resumed run reloads weights and optimizer state).
        assert a["accuracy"] == b["accuracy"] and a["heldout_rows"] == b["heldout_rows"] > 0
        assert np.isclose(a["heldout_loss"], b["heldout_loss"], rtol=1e-5)
        assert (a["loss"] is None) == (b["loss"] is None)
        assert a["loss"] is None or np.isclose(a["loss"], b["loss"], rtol=1e-5)
    summary = json.loads(storage.read_text(storage.join(remote_out, "summary.json")))
    expected = json.loads(open(os.path.join(local_out, "summary.json")).read())
    assert summary["counts"] == expected["counts"] == remote["train"]["per_run"][SUBSET]["counts"]
    assert summary["evaluations"] == expected["evaluations"] == steps + 1
    a, b = _weights(storage.join(remote_out, "model")), _weights(os.path.join(local_out, "model"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4

    # A rerun skips the complete stage and leaves the bucket as it was.
    marker = storage.read_text(storage.join(remote_out, "_SUCCESS"))
    assert dict(plan(recipe))["train"] == "skip (complete)"
    assert "train" not in run_recipe(recipe)
    assert storage.read_text(storage.join(remote_out, "_SUCCESS")) == marker


def test_metrics_log_on_s3_matches_local_bytes(s3, tmp_path):
    """append / truncate / merge rewrite the whole object: the bytes of a local log."""
    from training.hierarchical import merge_metrics

    outs = [str(tmp_path / "out"), storage.join(s3, "unit-metrics", "out")]
    for out in outs:
        for stage, steps in (("sft", 4), ("grpo", 3)):
            path = storage.join(out, stage, "metrics.jsonl")
            for step in range(steps):
                append_metrics(path, {"event": "eval", "step": step, "samples_seen": 8 * step})
            truncate_metrics(path, steps - 2)
        assert merge_metrics(out) == 3 + 2
    texts = [storage.read_text(storage.join(out, "metrics.jsonl")) for out in outs]
    assert texts[0] == texts[1] and texts[0].count("\n") == 5
    assert [r["samples_seen"] for r in read_metrics(storage.join(outs[1], "metrics.jsonl"))] == [
        0,
        8,
        16,
        16,
        24,
    ]
    storage.remove(outs[1])


def test_tiny_model_and_final_model_copy_on_s3(s3, tmp_path):
    """Without --model a remote run's tiny base is built locally and uploaded (config.json
    last); the hierarchical plan's OUT/model is a copy of OUT/grpo/model in the bucket."""
    from ray_jobs.train import TrainJobConfig, _link_final_model, _model

    run = storage.join(s3, "runs", "tiny")
    path = _model(TrainJobConfig(run=run, subset="x"))
    assert path == storage.join(run, "models", "tiny")
    names = set(storage.listdir(path))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert _model(TrainJobConfig(run=run, subset="x")) == path  # present: not rebuilt

    out = storage.join(run, "train", "plan")
    storage.copy_dir(path, storage.join(out, "grpo", "model"))
    storage.write_text(storage.join(out, "model", "stale.txt"), "old")
    _link_final_model(out)
    assert storage.listdir(storage.join(out, "model")) == sorted(names)
    copied = storage.read_bytes(storage.join(out, "model", "model.safetensors"))
    assert copied == storage.read_bytes(storage.join(path, "model.safetensors"))
    storage.remove(run)


def test_text_embedding_model_given_by_uri(s3, tmp_path):
    """A sentence model under a URI is staged to the local cache: same vectors as from disk."""
    from transformers import BertConfig, BertModel

    from operators.embeddings import TextEmbedConfig, TextEmbedder, default_text_model_path

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    local = tmp_path / "tiny-encoder"
    BertModel(config).save_pretrained(local)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(default_text_model_path(), name), local / name)
    uri = storage.join(s3, "models", "tiny-encoder")
    storage.upload_dir(str(local), uri)
    texts = ["What color is the car?\nRed.", "Count the bars.\n4"]
    from_disk = TextEmbedder(TextEmbedConfig(model_path=str(local))).encode(texts)
    from_uri = TextEmbedder(TextEmbedConfig(model_path=uri)).encode(texts)
    assert from_uri.shape == (2, 16) and np.array_equal(from_uri, from_disk)
    storage.remove(uri)

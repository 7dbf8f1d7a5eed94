"""A killed run resumes to exactly the outputs of an uninterrupted one; bad input never
crashes a run and every bad row is accounted for in quarantine."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from ray_jobs.recipe import load_recipe
from ray_jobs.run import run_recipe
from ray_jobs.synth import synthesize
from tests.training import conftest as training_fixtures

micro_model = training_fixtures.micro_model

CHEAP_SCORE = {
    "descriptors": [],
    "text_embedding": False,
    "capabilities": "none",
    "ost": "none",
    "shards_per_group": 1,
}


def _recipe(tmp_path, pool, run, **extra):
    data = {
        "name": run,
        "input": str(pool),
        "run": str(tmp_path / run),
        "num_cpus": 2,
        "ingest": {"chunk_bytes": 6000},
        "score": CHEAP_SCORE,
        "stages": ["ingest", "score", "dedup"],
        **extra,
    }
    path = tmp_path / f"{run}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _sorted_rows(folder):
    table = pq.read_table(folder)
    return table.sort_by("id").to_pylist()


@pytest.mark.slow
def test_sigkill_in_score_then_rerun_gives_identical_outputs(tmp_path):
    rows = _kill_in_score_and_resume(tmp_path, {})
    assert rows and all(r["motion"] is not None for r in rows if r["media_type"] == "video")


@pytest.mark.slow
def test_sigkill_in_model_descriptors_then_rerun_gives_identical_outputs(tmp_path, micro_model):
    """Per-row seeded sampling: stability (and loss) after a SIGKILL and a resume equal an
    uninterrupted run's, bit for bit; the proxy is warmed the same way from the same base."""
    proxy = {"base": micro_model, "max_rows": 24, "epochs": 1, "batch_size": 8}
    score = {**CHEAP_SCORE, "descriptors": ["loss", "stability"], "model_batch_size": 8}
    stages = ["ingest", "proxy", "score", "dedup"]
    rows = _kill_in_score_and_resume(tmp_path, {"proxy": proxy, "score": score, "stages": stages})
    stability = [r["stability"] for r in rows]
    assert all(v is not None for v in stability) and len(set(stability)) > 1


def _kill_in_score_and_resume(tmp_path, extra: dict) -> list[dict]:
    """SIGKILL `mmcurate run` after two score shards, rerun it, run the recipe again from
    scratch; the resumed outputs equal the clean ones. Returns the resumed scored rows."""
    pool = tmp_path / "pool"
    synthesize(300, str(pool), seed=11, parallel=False)
    killed = _recipe(tmp_path, pool / "pool.jsonl", "killed", **extra)
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    process = subprocess.Popen(
        [sys.executable, "-m", "ray_jobs.run", killed],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    scored = tmp_path / "killed" / "scored"
    deadline = time.time() + 600
    while time.time() < deadline:
        done = [n for n in os.listdir(scored)] if scored.exists() else []
        if len([n for n in done if n.startswith("part-")]) >= 2:
            break
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (scored / "_SUCCESS").exists()
    partial = len([n for n in os.listdir(scored) if n.startswith("part-")])
    shards = len([n for n in os.listdir(tmp_path / "killed" / "pool") if n.startswith("part-")])
    assert 2 <= partial < shards

    run_recipe(load_recipe(killed))
    run_recipe(load_recipe(_recipe(tmp_path, pool / "pool.jsonl", "clean", **extra)))
    resumed, clean = _sorted_rows(scored), _sorted_rows(tmp_path / "clean" / "scored")
    assert [r["id"] for r in resumed] == [r["id"] for r in clean]
    dedup = tmp_path / "killed" / "dedup"
    assert _sorted_rows(dedup) == _sorted_rows(tmp_path / "clean" / "dedup")
    assert len({r["id"] for r in resumed}) == len(resumed)
    for a, b in zip(resumed, clean, strict=True):
        assert {k: v for k, v in a.items() if k != "origin"} == {
            k: v for k, v in b.items() if k != "origin"
        }
    for stage in ("pool", "scored", "dedup"):
        first = yaml.safe_load((tmp_path / "killed" / stage / "_SUCCESS").read_text())
        second = yaml.safe_load((tmp_path / "clean" / stage / "_SUCCESS").read_text())
        assert first == second
    return resumed


def _bad_pool(tmp_path):
    """Every kind of bad row beside good ones; returns (pool path, good count, bad count)."""
    root = tmp_path / "badpool"
    (root / "media").mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(root / "media" / "ok.png")
    (root / "media" / "empty.png").write_bytes(b"")
    (root / "media" / "corrupt.png").write_bytes(b"\x89PNG\r\n garbage")
    (root / "media" / "corrupt.mp4").write_bytes(os.urandom(500))
    with open(root / "media" / "huge.png", "wb") as handle:
        handle.truncate(600 * 1024 * 1024)  # sparse: over the 512 MB media limit
    os.symlink("/etc/hostname", root / "media" / "out.png")

    def row(i, **fields):
        base = {
            "id": f"r{i}",
            "image": "media/ok.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is shown?"},
                {"from": "gpt", "value": "a gray square"},
            ],
        }
        base.update(fields)
        return json.dumps({k: v for k, v in base.items() if v is not None}).encode()

    good = [row(i) for i in range(20)]
    bad = [
        b'{"id": "x1", "image": "media/ok.png", "conversations": [',  # malformed JSON
        json.dumps({"id": "x2", "image": "media/ok.png"}).encode(),  # missing conversations
        row(3, conversations="not a list").replace(b'"r3"', b'"x3"'),  # wrong type
        row(4, id=["list"]),  # wrong id type
        b"\xff\xfe\xfd not utf-8 at all",
        row(5, image="media/missing.png").replace(b'"r5"', b'"x5"'),
        row(6, image="media/corrupt.png").replace(b'"r6"', b'"x6"'),
        row(7, video="media/corrupt.mp4", image=None)
        .replace(b'"r7"', b'"x7"')
        .replace(b"<image>", b"<video>"),
        row(8, image="media/empty.png").replace(b'"r8"', b'"x8"'),
        row(9, image="media/huge.png").replace(b'"r9"', b'"x9"'),
        row(10, image="../../etc/passwd").replace(b'"r10"', b'"x10"'),
        row(11, image="/etc/passwd").replace(b'"r11"', b'"x11"'),
        row(12, image="media/out.png").replace(b'"r12"', b'"x12"'),
    ]
    lines = [
        line
        for pair in zip(good, bad + [b""] * (len(good) - len(bad)), strict=True)
        for line in pair
        if line
    ]
    (root / "pool.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return root / "pool.jsonl", len(good), len(bad)


@pytest.mark.slow
def test_every_kind_of_bad_row_is_quarantined_and_counts_reconcile(tmp_path, ray_session):
    pool, good, bad = _bad_pool(tmp_path)
    recipe = load_recipe(_recipe(tmp_path, pool, "bad"))
    results = run_recipe(recipe)
    ingest, score = results["ingest"], results["score"]
    assert ingest["input"] == good + bad
    assert ingest["kept"] == good and ingest["quarantined"] == bad
    assert score["input"] == ingest["kept"] == score["kept"] + score["quarantined"]
    quarantined = pq.read_table(tmp_path / "bad" / "quarantine" / "ingest").to_pylist()
    reasons = sorted(q["reason"] for q in quarantined)
    assert reasons.count("malformed") == 5
    assert reasons.count("path_escape") == 3
    assert reasons.count("missing_media") == 1 and reasons.count("corrupt_media") == 4
    assert all(q["error"] and q["raw"] and q["origin"] for q in quarantined)

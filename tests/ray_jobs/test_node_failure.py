"""A node dies during the score stage: a real two-node local Ray cluster (a head and a worker
node, each its own raylet with its own CPUs, on loopback). The worker node is killed (SIGKILL of
its raylet and every process under it) while `mmcurate run` scores; the job completes through
Ray Data's task retries and actor restarts (kept at their defaults on purpose: the comment above
ray_jobs/score.py: _apply) or, if the driver itself gives up, a rerun
resumes from the finished shards. Either way the scored rows equal an uninterrupted run's.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from ray_jobs.synth import synthesize
from tests.ray_jobs.test_cluster_submit import _free_port, _stop_cluster

REPO = pathlib.Path(__file__).resolve().parents[2]
CPU_SCORE = {
    "descriptors": [],
    "text_embedding": False,
    "capabilities": "none",
    "ost": "none",
    "shards_per_group": 1,  # a shard written per pass: the kill lands between and inside passes
}


def _recipe(tmp_path, pool, name) -> str:
    path = tmp_path / f"{name}.yaml"
    data = {
        "name": name,
        "input": str(pool / "pool.jsonl"),
        "run": str(tmp_path / name),
        "stages": ["ingest", "score"],
        "ingest": {"chunk_bytes": 20_000},
        "score": CPU_SCORE,
    }
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _ray(*args, env) -> None:
    ray = str(pathlib.Path(sys.executable).parent / "ray")
    subprocess.run([ray, *args], env=env, check=True, capture_output=True, timeout=180)


def _start_cluster(temp_dir: str, env: dict) -> tuple[str, int]:
    port, node_port = _free_port(), _free_port()
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", "--metrics-export-port=0"]
    _ray(
        "start", "--head", "--num-cpus=1", f"--port={port}", "--include-dashboard=false",
        f"--temp-dir={temp_dir}", "--dashboard-agent-listen-port=0", *common, env=env,
    )  # fmt: skip
    _ray(
        "start", f"--address=127.0.0.1:{port}", "--num-cpus=2",
        f"--node-manager-port={node_port}", "--dashboard-agent-listen-port=0", *common, env=env,
    )  # fmt: skip
    return f"127.0.0.1:{port}", node_port


def _kill_worker_node(node_port: int) -> int:
    """SIGKILL the worker node's raylet and everything under it; returns processes killed."""
    raylets = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(f"--node_manager_port={node_port}" in part for part in p.info["cmdline"] or [])
    ]
    doomed = {q for p in raylets for q in [p, *p.children(recursive=True)]}
    for proc in doomed:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    return len(doomed)


def _run(recipe: str, env: dict, kill=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ray_jobs.run", recipe]
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    killed = 0
    if kill is not None:
        started, (scored, node_port) = time.time(), kill
        while proc.poll() is None and time.time() - started < 600:
            if scored.exists() and any(scored.glob("part-*.parquet")):
                killed = _kill_worker_node(node_port)
                break
            time.sleep(0.2)
    out, _ = proc.communicate(timeout=900)
    return subprocess.CompletedProcess(command, proc.returncode, out + f"\nkilled {killed}", "")


def _scored(run: pathlib.Path):
    return pq.read_table(run / "scored").sort_by("id").to_pylist()


@pytest.mark.slow
def test_worker_node_killed_during_score_equals_an_uninterrupted_run(tmp_path):
    pool = tmp_path / "pool"
    synthesize(400, str(pool), seed=3, parallel=False)
    temp_dir = f"/tmp/mmc-{secrets.token_hex(3)}"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.update(MMCURATE_VERBOSE="0", PYTHONPATH=str(REPO))
    try:
        address, node_port = _start_cluster(temp_dir, env)
        env["RAY_ADDRESS"] = address
        reference = _run(_recipe(tmp_path, pool, "reference"), env)
        assert reference.returncode == 0, reference.stdout[-3000:]
        faulted_recipe = _recipe(tmp_path, pool, "faulted")
        faulted = _run(faulted_recipe, env, kill=(tmp_path / "faulted" / "scored", node_port))
        assert "killed 0" not in faulted.stdout, "the worker node was never killed"
        print(f"faulted run: exit {faulted.returncode}; {faulted.stdout.splitlines()[-1]}")
        if faulted.returncode != 0:  # the driver gave up: a rerun resumes on the head alone
            faulted = _run(faulted_recipe, env)
        assert faulted.returncode == 0, faulted.stdout[-3000:]
    finally:
        _stop_cluster(temp_dir)
    assert _scored(tmp_path / "faulted") == _scored(tmp_path / "reference")
    counts = yaml.safe_load((tmp_path / "faulted" / "scored" / "_SUCCESS").read_text())
    assert counts["input"] == counts["kept"] + counts["quarantined"] > 300

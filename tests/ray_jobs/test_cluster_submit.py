"""`ray job submit` of a recipe to a real local Ray cluster (`ray start --head` on loopback).

The cluster gets its own temp dir, ports and auth token; only its own processes are stopped
afterwards (a plain `ray stop` would also kill the test session's Ray).
"""

import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from ray_jobs.synth import synthesize

REPO = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_cluster(temp_dir: str) -> None:
    owned = set()
    for proc in psutil.process_iter(["cmdline"]):
        if any(temp_dir in part for part in proc.info["cmdline"] or []):
            owned.add(proc)
            owned.update(proc.children(recursive=True))
    for proc in owned:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(owned), timeout=30)


@pytest.mark.slow
def test_ray_job_submit_runs_the_recipe(tmp_path):
    pool = tmp_path / "pool"
    synthesize(300, str(pool), seed=5, parallel=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {"name": "submitted", "input": str(pool / "pool.jsonl"), "run": str(tmp_path / "run")}
        )
    )
    ray = str(pathlib.Path(sys.executable).parent / "ray")
    temp_dir = f"/tmp/mmc-{secrets.token_hex(3)}"
    dashboard = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    try:
        subprocess.run(
            [
                ray,
                "start",
                "--head",
                "--num-cpus=2",
                f"--port={_free_port()}",
                "--node-ip-address=127.0.0.1",
                "--include-dashboard=true",
                f"--dashboard-port={dashboard}",
                f"--temp-dir={temp_dir}",
                "--disable-usage-stats",
                # Own agent ports: the test session's Ray already holds the defaults, and a
                # dashboard agent that cannot bind leaves "No available agent to submit job".
                f"--dashboard-agent-listen-port={_free_port()}",
                f"--dashboard-agent-grpc-port={_free_port()}",
                f"--runtime-env-agent-port={_free_port()}",
                f"--metrics-export-port={_free_port()}",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        command = [
            ray,
            "job",
            "submit",
            f"--address=http://127.0.0.1:{dashboard}",
            f"--working-dir={REPO}",
            "--",
            "python",
            "-m",
            "ray_jobs.run",
            str(recipe),
        ]
        for _ in range(30):  # the dashboard's job agent comes up a few seconds after `ray start`
            submitted = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=1200
            )
            if "No available agent" not in submitted.stdout + submitted.stderr:
                break
            time.sleep(2)
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
        assert "succeeded" in submitted.stdout + submitted.stderr
    finally:
        _stop_cluster(temp_dir)
    run = tmp_path / "run"
    assert (run / "pool" / "_SUCCESS").exists()
    assert (run / "report.html").exists() and (run / "config.yaml").exists()
    counts = yaml.safe_load((run / "pool" / "_SUCCESS").read_text())
    assert counts["input"] == 300 == counts["kept"] + counts["quarantined"]

"""`mmcurate run` keeps Ray's own output in RUN/logs/ and prints only its own lines."""

import os
import re
import subprocess
import sys

import pytest
import yaml

RAY_LINE = re.compile(r"streaming_executor|logging_progress|worker\.py:|\(raylet\)|pid=\d+")


@pytest.mark.slow
def test_run_console_has_stage_lines_and_a_summary_and_no_ray_internals(tmp_path, small_pool):
    recipe = {
        "name": "console",
        "input": str(small_pool / "pool.jsonl"),
        "run": str(tmp_path / "run"),
        "num_cpus": 2,
        "stages": ["ingest", "dedup"],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MMCURATE_VERBOSE")}
    done = subprocess.run(
        [sys.executable, "-m", "ray_jobs.cli", "run", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    assert [line for line in lines if RAY_LINE.search(line)] == []
    assert "[mmcurate] ingest: started" in lines and "[mmcurate] dedup: started" in lines
    assert any(line.startswith("[mmcurate] ingest: input=400 ") for line in lines)
    assert any(re.match(r"│ dedup\s+│ \d+", line) for line in lines)  # the summary table
    assert len(lines) < 40
    logs = tmp_path / "run" / "logs"
    assert "streaming_executor" in (logs / "driver.log").read_text()
    assert any(n.startswith("worker-") for n in os.listdir(logs / "ray"))


def test_quiet_mode_silences_transformers_bars_even_when_imported_first(tmp_path, monkeypatch):
    import contextlib
    import io

    import transformers

    from ray_jobs.console import set_verbose
    from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

    names = (
        "MMCURATE_VERBOSE",
        "HF_HUB_DISABLE_PROGRESS_BARS",
        "TRANSFORMERS_VERBOSITY",
        "RAY_DATA_DISABLE_PROGRESS_BARS",
    )
    for name in names:  # set first, so that monkeypatch restores each one, set or not
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    transformers.utils.logging.enable_progress_bar()
    try:
        set_verbose(False)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            build_tiny_qwen2_vl(str(tmp_path / "m"), TinyConfig.micro())
        assert "Writing model shards" not in err.getvalue()
    finally:
        transformers.utils.logging.enable_progress_bar()

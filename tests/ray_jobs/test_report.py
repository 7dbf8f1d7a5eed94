import os
import shutil
import subprocess

import pytest

from ray_jobs.ingest import IngestConfig, ingest
from ray_jobs.report import build_report


def test_report_renders_in_headless_chromium(ray_session, tmp_path, small_pool):
    run = tmp_path / "run"
    ingest(IngestConfig(str(small_pool / "pool.jsonl"), str(run)))
    path = build_report(str(run))
    page = open(path).read()
    assert page.count("data:image/png;base64,") >= 1
    assert "Quarantine" in page and "http://" not in page and "https://" not in page
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("MMCURATE_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (MMCURATE_REQUIRE_BROWSER is set) but not found")
        pytest.skip("chromium is not installed")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            f"file://{path}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    # The pool plot's bars are drawn in #4c72b0: the page rendered its inline image.
    bars = np.all(np.abs(pixels.astype(int) - [76, 114, 176]) < 12, axis=-1)
    assert bars.sum() > 2000

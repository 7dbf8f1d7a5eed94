import os
import re
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


def _jpegs_of(page: str, alt: str) -> list:
    """The thumbnails the page shows for row `alt`, decoded."""
    import base64
    import io
    import re

    from PIL import Image

    pattern = rf'<img alt="{re.escape(alt)}" src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"'
    return [Image.open(io.BytesIO(base64.b64decode(m))) for m in re.findall(pattern, page)]


@pytest.mark.slow
def test_report_shows_real_rows_funnel_and_galleries(ray_session, tmp_path, small_pool):
    import numpy as np
    import pyarrow.parquet as pq
    import yaml
    from PIL import Image

    from operators.media import load_image
    from ray_jobs.recipe import load_recipe
    from ray_jobs.run import run_recipe

    recipe = {
        "name": "report",
        "input": str(small_pool / "pool.jsonl"),
        "run": str(tmp_path / "run"),
        "score": {"descriptors": [], "text_embedding": False, "capabilities": "none"}
        | {"ost": "none"},
        "stages": ["ingest", "score", "dedup", "report"],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    results = run_recipe(load_recipe(str(tmp_path / "r.yaml")))
    page = open(tmp_path / "run" / "report.html").read()
    funnel = page[page.index('class="funnel"') : page.index("<h2>Pool")]
    for value in (results["ingest"]["input"], results["score"]["kept"], results["dedup"]["kept"]):
        assert f"<span>{value}</span>" in funnel
    # Duplicate clusters: each shown member's verdict is the one dedup wrote.
    dedup = {r["id"]: r for r in pq.read_table(tmp_path / "run" / "dedup").to_pylist()}
    shown = page[page.index("Duplicate clusters (sample)") : page.index("motion: highest")]
    verdicts = re.findall(r'<div class="tag">([^<]+)</div><div>([^ <]+) ·', shown)
    assert len(verdicts) >= 4 and any(v.startswith("removed") for v, _ in verdicts)
    for verdict, row_id in verdicts:
        kept = dedup[row_id]["dup_keep"]
        assert verdict == ("kept" if kept else f"removed ({dedup[row_id]['dup_reason']})")
    # The motion gallery's first card is the row with the highest motion.
    scored = pq.read_table(tmp_path / "run" / "scored").to_pylist()
    top = max(scored, key=lambda r: (r["motion"], r["id"]))
    top_card = page[page.index("motion: highest") :]
    assert f"highest motion = {top['motion']:.4g}" in top_card
    # An image row's thumbnail is that image, downscaled.
    image_row = next(r for r in scored if r["media_type"] == "image" and r["id"] in page)
    thumbs = _jpegs_of(page, image_row["id"])
    assert thumbs and max(thumbs[0].size) <= 96
    original = Image.fromarray(load_image(image_row["media"][0])).resize(thumbs[0].size)
    diff = np.abs(np.asarray(original, float) - np.asarray(thumbs[0].convert("RGB"), float))
    assert diff.mean() < 12
    # A video row's thumbnail is three frames side by side.
    video_row = next(r for r in scored if r["media_type"] == "video" and r["id"] in page)
    strip = _jpegs_of(page, video_row["id"])[0]
    assert strip.width >= 2.5 * strip.height


def test_the_drawn_cutoffs_are_the_selection_codes_boundaries():
    import numpy as np

    from ray_jobs.report import CUTOFFS
    from selection.baselines import cmab_levels, pism_levels

    for name, levels in (("pism_lambda", pism_levels), ("cmab_ratio", cmab_levels)):
        for cut in CUTOFFS[name][0]:
            below, above = levels(np.array([cut - 0.01, cut + 0.01]))
            assert below != above, (name, cut)
        # and nowhere else: within each band the level does not change
        grid = np.linspace(-0.5, 2.5, 3001)
        changes = grid[1:][levels(grid[1:]) != levels(grid[:-1])]
        assert all(min(abs(c - k) for k in CUTOFFS[name][0]) < 0.002 for c in changes)

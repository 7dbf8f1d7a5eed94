"""The stages of a run, in order: each takes the recipe and returns its counts.

A stage is complete when its output directories carry their `_SUCCESS` markers.
"""

from __future__ import annotations

import os

from ray_jobs.ingest import IngestConfig, ingest
from ray_jobs.recipe import Recipe
from ray_jobs.report import build_report
from ray_jobs.rundir import is_complete

__all__ = ["STAGES", "stage_done", "stage_outputs"]


def _ingest(recipe: Recipe) -> dict:
    config = IngestConfig(
        recipe.input, recipe.run, recipe.media_root, recipe.ingest.source, recipe.ingest.check_media
    )
    return ingest(config)


def _report(recipe: Recipe) -> dict:
    return {"written": build_report(recipe.run)}


STAGES = {
    "ingest": _ingest,
    "report": _report,
}


def stage_outputs(recipe: Recipe, name: str) -> list[str]:
    """The directories (or files) a stage writes, removed before a rerun."""
    run = recipe.run
    return {
        "ingest": [os.path.join(run, "pool"), os.path.join(run, "quarantine", "ingest")],
        "report": [os.path.join(run, "report.html")],
    }[name]


def stage_done(recipe: Recipe, name: str) -> bool:
    if name == "report":
        return False  # cheap, and always reflects the latest outputs
    return all(is_complete(p) for p in stage_outputs(recipe, name))

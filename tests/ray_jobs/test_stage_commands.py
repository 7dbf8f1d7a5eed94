"""`mmcurate dedup` / `mmcurate cluster` on a run made by `mmcurate run` use that run's stage
settings (RUN/config.yaml, as the pipeline resolved them), with only the flags given on top."""

from __future__ import annotations

from dataclasses import replace

import yaml

from operators.semdedup import SemanticConfig
from ray_jobs import cluster as cluster_job
from ray_jobs import dedup as dedup_job
from ray_jobs.recipe import load_recipe
from ray_jobs.run import _write_resolved
from ray_jobs.stages import cluster_config, dedup_config


def _parse(module, argv):
    return module._parser().parse_args(argv)


def _resolved_run(tmp_path):
    recipe_path = tmp_path / "recipe.yaml"
    data = {
        "name": "t",
        "input": str(tmp_path / "pool.jsonl"),
        "run": str(tmp_path / "elsewhere"),
        "dedup": {
            "text": {"threshold": 0.6, "ngram": 3},
            "near_media": False,
            "partitions": 3,
            "semantic": {"enabled": True, "threshold": 0.91},
        },
        "cluster": {"k": 7, "seed": 4},
    }
    recipe_path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(str(recipe_path))
    run = tmp_path / "run"
    run.mkdir()
    recipe = replace(recipe, run=str(run))
    _write_resolved(recipe)
    return recipe, str(run)


def test_dedup_command_uses_the_runs_dedup_stage_and_the_flags_given(tmp_path):
    recipe, run = _resolved_run(tmp_path)
    config = dedup_job._cli_config(_parse(dedup_job, ["--run", run]))
    assert config == dedup_config(recipe)
    assert config.text.threshold == 0.6 and config.text.ngram == 3 and not config.near_media
    assert config.semantic == SemanticConfig(enabled=True, threshold=0.91)
    flagged = dedup_job._cli_config(_parse(dedup_job, ["--run", run, "--threshold", "0.5"]))
    assert flagged.text.threshold == 0.5 and flagged.text.ngram == 3 and flagged.partitions == 3
    bare = tmp_path / "bare"  # a run without a resolved recipe: the defaults
    bare.mkdir()
    default = dedup_job._cli_config(_parse(dedup_job, ["--run", str(bare), "--no-media"]))
    assert default.text.threshold == 0.6 and not default.near_media
    assert not default.semantic.enabled


def test_cluster_command_uses_the_runs_cluster_stage_and_the_flags_given(tmp_path):
    recipe, run = _resolved_run(tmp_path)
    config = cluster_job._cli_config(_parse(cluster_job, ["--run", run]))
    assert config == cluster_config(recipe) and config.kmeans.k == 7 and config.kmeans.seed == 4
    flagged = cluster_job._cli_config(_parse(cluster_job, ["--run", run, "--k", "5", "--gdo"]))
    assert flagged.kmeans.k == 5 and flagged.kmeans.seed == 4 and flagged.kmeans.gdo_features

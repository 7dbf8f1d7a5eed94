import pytest
import yaml

from ray_jobs.config_loading import ConfigError
from ray_jobs.recipe import Recipe, load_recipe
from ray_jobs.run import plan


def _write(tmp_path, data, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_recipe_loads_with_defaults_and_resolves_relative_paths(tmp_path):
    recipe = load_recipe(_write(tmp_path, {"name": "r", "input": "pool.jsonl", "run": "run"}))
    assert isinstance(recipe, Recipe)
    assert recipe.input == str(tmp_path / "pool.jsonl") and recipe.run == str(tmp_path / "run")
    assert recipe.ingest.check_media is True


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "r", "input": "p", "run": "d", "scroe": {}}, "unknown key 'scroe'"),
        (
            {"name": "r", "input": "p", "run": "d", "ingest": {"check_media": "yes"}},
            "ingest.check_media: expected bool",
        ),
        ({"name": "r", "input": "p", "run": "d", "num_cpus": 1.5}, "num_cpus"),
        ({"name": "r", "run": "d"}, "missing required key 'input'"),
        ({"name": "r", "input": "p", "run": "d", "ingest": {"chek": 1}}, "ingest: unknown key"),
    ],
)
def test_bad_recipes_name_the_file_and_key(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_recipe(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\ninput: p\nrun: d\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(str(path))


def test_plan_skips_complete_stages_and_honours_from_and_only(tmp_path):
    recipe = load_recipe(_write(tmp_path, {"name": "r", "input": "p.jsonl", "run": "run"}))
    actions = dict(plan(recipe))
    # No subsets or trainings: those stages have nothing to do.
    assert actions == {
        "ingest": "run",
        "proxy": "run",
        "score": "run",
        "dedup": "run",
        "cluster": "run",
        "select": "skip (complete)",
        "train": "skip (complete)",
        "report": "run",
    }
    assert actions["ingest"] == "run" and actions["report"] == "run"
    limited = load_recipe(
        _write(
            tmp_path,
            {"name": "r", "input": "p.jsonl", "run": "run", "stages": ["ingest", "report"]},
            "limited.yaml",
        )
    )
    assert dict(plan(limited))["score"] == "skip (not in recipe)"
    from ray_jobs.fingerprints import record_complete, stage_fingerprints
    from ray_jobs.rundir import mark_complete

    outputs = [str(tmp_path / "run" / "pool"), str(tmp_path / "run" / "quarantine" / "ingest")]
    for path in outputs:
        mark_complete(path, {})
    record_complete(outputs, *stage_fingerprints(recipe, list(recipe.stages))["ingest"])
    actions = dict(plan(recipe))
    assert actions["ingest"] == "skip (complete)" and actions["report"] == "run"
    assert dict(plan(recipe, from_stage="ingest"))["ingest"] == "rerun"
    only = dict(plan(recipe, only="report"))
    assert only["report"] == "rerun" and only["ingest"] == "skip (not selected)"
    with pytest.raises(SystemExit):
        plan(recipe, only="nope")


def test_generation_backend_is_checked_and_vllm_takes_stability_off_the_hf_actors(tmp_path):
    from ray_jobs.stages import score_steps_for

    base = {"name": "r", "input": "p.jsonl", "run": "run"}
    bad = _write(tmp_path, {**base, "score": {"generation_backend": "vlm"}})
    with pytest.raises(ConfigError, match="score.generation_backend: 'vlm'") as caught:
        load_recipe(bad)
    assert bad in str(caught.value)
    score = {"generation_backend": "vllm", "prompted_temporal": True, "vllm": {"samples": 3}}
    recipe = load_recipe(_write(tmp_path, {**base, "score": score}))
    steps = {step.name: step for step in score_steps_for(recipe)}
    hf = steps["model_descriptors"].fn_constructor_kwargs["config"]
    assert "stability" not in hf.descriptors and "loss" in hf.descriptors
    assert hf.prompted_temporal is False  # asked by the engines instead
    generation = steps["generation"]
    assert generation.on_dataset and list(steps).index("generation") > list(steps).index(
        "model_descriptors"
    )
    config = generation.fn_kwargs["config"]
    assert config.model == str(tmp_path / "run" / "proxy") and config.samples == 3
    assert config.prompted_temporal is True and config.trust_remote_code is False
    default = load_recipe(_write(tmp_path, base))
    names = [step.name for step in score_steps_for(default)]
    assert "generation" not in names
    hf = next(s for s in score_steps_for(default) if s.name == "model_descriptors")
    assert "stability" in hf.fn_constructor_kwargs["config"].descriptors

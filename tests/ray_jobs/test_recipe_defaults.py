"""Shared defaults for list sections, recipes written without placeholder keys, and the
starter recipe of `mmcurate recipe init` loading back through the recipe loader."""

import yaml

from ray_jobs.demo import demo_recipe
from ray_jobs.recipe import DedupSection, IngestSection, ScoreSection, load_recipe, train_config
from ray_jobs.recipe_init import main as recipe_main
from ray_jobs.run import _write_resolved, plan
from ray_jobs.train import PLACEHOLDERS


def _write(tmp_path, data, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_train_defaults_merge_under_each_item_and_the_item_wins(tmp_path):
    data = {
        "name": "r",
        "input": "p.jsonl",
        "run": "run",
        "subsets": [{"name": "a", "method": "random"}, {"name": "b", "method": "random"}],
        "subset_defaults": {"budget": 0.25, "seed": 7},
        "train_defaults": {"heldout_per_category": 9, "sft": {"max_steps": 5, "batch_size": 8}},
        "train": [{"subset": "a"}, {"subset": "b", "sft": {"max_steps": 11}}],
    }
    recipe = load_recipe(_write(tmp_path, data))
    assert recipe.train_defaults == {} and recipe.subset_defaults == {}
    a, b = (train_config(recipe, spec) for spec in recipe.train)
    assert (a.heldout_per_category, a.sft.max_steps, a.sft.batch_size) == (9, 5, 8)
    assert (b.heldout_per_category, b.sft.max_steps, b.sft.batch_size) == (9, 11, 8)
    assert [s["budget"] for s in recipe.subsets] == [0.25, 0.25]
    assert [s["seed"] for s in recipe.subsets] == [7, 7]


def _placeholders(node, where=""):
    """Paths of keys that hold an empty placeholder value."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in PLACEHOLDERS and value == "":
                found.append(f"{where}.{key}")
            found += _placeholders(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _placeholders(value, f"{where}[{i}]")
    return found


def test_the_demo_recipe_is_short_and_states_no_placeholders(tmp_path):
    data = demo_recipe(str(tmp_path), n=1500, train_samples=2400)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    assert len(text.splitlines()) <= 30
    assert _placeholders(data) == [] and "proxy" in data and "base" not in data["proxy"]
    recipe = load_recipe(_write(tmp_path, data))
    configs = [train_config(recipe, spec) for spec in recipe.train]
    assert [c.subset for c in configs] == [s["name"] for s in data["subsets"]]
    for config in configs:
        assert config.sft.max_steps == 2400 // 32 and config.sft.batch_size == 32
        assert config.heldout == str(tmp_path / "heldout")
    # RUN/config.yaml: the resolved recipe, items in full, no placeholder keys; loads back
    _write_resolved(recipe)
    resolved = tmp_path / "run" / "config.yaml"
    assert _placeholders(yaml.safe_load(resolved.read_text())["train"]) == []
    again = load_recipe(str(resolved))
    assert [train_config(again, s) for s in again.train] == configs


def test_recipe_init_writes_a_commented_recipe_that_loads_back(tmp_path):
    pool = tmp_path / "data" / "mypool.jsonl"
    pool.parent.mkdir()
    pool.write_text('{"id": "a"}\n{"id": "b"}\n')
    out = tmp_path / "recipes" / "mypool.yaml"
    out.parent.mkdir()
    assert recipe_main(["init", "--input", str(pool), "--out", str(out)]) == 0
    text = out.read_text()
    assert "# input: " in text and "2 lines" in text
    assert "check_media: true  # open every media file" in text
    recipe = load_recipe(str(out))
    assert recipe.name == "mypool" and recipe.input == str(pool)
    assert recipe.run == str(tmp_path / "recipes" / "runs" / "mypool")
    assert recipe.ingest == IngestSection() and recipe.score == ScoreSection()
    assert recipe.dedup == DedupSection()
    assert [train_config(recipe, s).subset for s in recipe.train] == [
        s["name"] for s in recipe.subsets
    ]
    assert dict(plan(recipe))["ingest"] == "run"

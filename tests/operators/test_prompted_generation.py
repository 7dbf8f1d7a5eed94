"""mmSSR's prompted scorer and styler through the VLM runtime's generation (tiny Qwen2-VL built
offline), reachable from the recipe, with unparsable replies counted."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from operators.capabilities import PromptedCapabilityScorer, PromptedScorerConfig
from operators.prompted_generation import PromptGenerationConfig, VLMGenerate, prompt_row
from operators.schema import ROW_SCHEMA
from operators.styles import PromptedStyler, PromptedStylerConfig
from operators.vlm_inputs import decode_media, encode_row
from operators.vlm_runtime import RuntimeConfig, VLMRuntime

CAPS = ("ocr", "counting")


@pytest.fixture(scope="module")
def model_path(micro_qwen):
    return micro_qwen


@pytest.fixture(scope="module")
def rows(small_pool_rows):
    image = next(r for r in small_pool_rows if r["media_type"] == "image")
    missing = {**image, "id": "missing-1", "media": ["/nonexistent/x.png"]}
    return [image, next(r for r in small_pool_rows if r["media_type"] == "video"), missing]


def test_replies_bind_the_media_and_match_one_row_generation(model_path, rows):
    config = PromptGenerationConfig(RuntimeConfig(model_path), max_new_tokens=6)
    generate = VLMGenerate(config)()
    text = "Question: <image>\nWhat is shown?\nRate it 0 to 5."
    prompts = [prompt_row(rows[0], text), prompt_row(rows[2], text), "Rate 0 to 5: a cat."]
    replies = generate(prompts)
    assert isinstance(replies[0], str) and isinstance(replies[2], str)
    assert replies[1] is None  # media that cannot be decoded: no reply
    # The same prompt encoded alone, with its decoded image, gives the same greedy reply.
    runtime = VLMRuntime(config.runtime)
    alone = encode_row(runtime.processor, prompts[0], decode_media(rows[0], 8))
    assert "pixel_values" in alone.media  # the image is in the input, not just its token
    ids = runtime.generate([alone], max_new_tokens=6)[0][0]
    assert replies[0] == runtime.decode(ids)


def test_prompted_scorer_and_styler_on_the_tiny_vlm(model_path, rows):
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    make = VLMGenerate(PromptGenerationConfig(RuntimeConfig(model_path), max_new_tokens=6))
    scorer = PromptedCapabilityScorer(
        PromptedScorerConfig(capabilities=CAPS, with_media=True), make
    )
    out = scorer(table)
    errors = [json.loads(e) if e else {} for e in out.column("capability_errors").to_pylist()]
    for cap in CAPS:
        column = out.column(f"cap_{cap}").to_pylist()
        for row, value in enumerate(column):
            assert (value is None) == (f"cap_{cap}" in errors[row])
            assert value is None or 0.0 <= value <= 5.0
    assert errors[2] == {f"cap_{c}": "empty" for c in CAPS}  # no media, no reply
    assert sum(scorer.stats.values()) == len(rows) * len(CAPS)
    styler = PromptedStyler(PromptedStylerConfig(with_media=True), make)
    styled = styler(table)
    reasons = styled.column("style_error").to_pylist()
    assert reasons[2] == "empty"
    for style, reason in zip(styled.column("styles").to_pylist(), reasons, strict=True):
        assert (style is None) == (reason is not None)


def test_recipe_reaches_the_prompted_scorer_and_styler(tmp_path):
    from ray_jobs.recipe import load_recipe
    from ray_jobs.stages import needs_proxy, score_steps_for

    recipe_path = tmp_path / "r.yaml"
    score = {"capabilities": "prompted", "styles": "prompted", "descriptors": [], "ost": "none"}
    recipe_path.write_text(
        yaml.safe_dump({"name": "r", "input": "p.jsonl", "run": "run", "score": score})
    )
    recipe = load_recipe(str(recipe_path))
    steps = {step.name: step for step in score_steps_for(recipe)}
    assert steps["capabilities"].fn is PromptedCapabilityScorer
    assert steps["styles"].fn is PromptedStyler
    for name in ("capabilities", "styles"):
        kwargs = steps[name].fn_constructor_kwargs
        assert kwargs["config"].with_media is True
        assert kwargs["make_generate"].config.runtime.model == str(tmp_path / "run" / "proxy")
    assert needs_proxy(recipe)  # the proxy answers the prompts, so it is warmed up
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"name": "r", "input": "p", "run": "run", "score": {"styles": "llm"}})
    )
    with pytest.raises(Exception, match="score.styles"):
        load_recipe(str(bad))


def test_unparsable_replies_are_counted_in_the_stage_counts(tmp_path):
    from ray_jobs.score import unparsable_counts

    table = pa.table(
        {
            "capability_errors": [
                json.dumps({"cap_ocr": "no_number", "cap_counting": "empty"}),
                None,
            ],
            "style_error": [None, "no_style"],
        }
    )
    pq.write_table(table, tmp_path / "part-00000.parquet")
    got = unparsable_counts(str(tmp_path), ["part-00000.parquet"])
    assert got == {
        "unparsable": {"capabilities": {"no_number": 1, "empty": 1}, "styles": {"no_style": 1}}
    }


def test_recipe_reaches_the_visual_embedding_for_clustering(tmp_path):
    from operators.embeddings import VisualEmbedder
    from ray_jobs.recipe import load_recipe
    from ray_jobs.stages import needs_proxy, score_steps_for

    spec = {"name": "r", "input": "p.jsonl", "run": "run"}
    score = {"visual_embedding": True, "descriptors": [], "ost": "none"}
    cluster = {"embedding_column": "visual_embedding", "gdo_features": True}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(spec | {"score": score, "cluster": cluster}))
    recipe = load_recipe(str(path))
    steps = {step.name: step for step in score_steps_for(recipe)}
    step = steps["visual_embedding"]
    assert step.fn is VisualEmbedder
    assert step.fn_constructor_kwargs["config"].model_path == str(tmp_path / "run" / "proxy")
    assert needs_proxy(recipe) and recipe.cluster.embedding_column == "visual_embedding"
    path.write_text(yaml.safe_dump(spec | {"score": {"descriptors": [], "ost": "none"}}))
    assert "visual_embedding" not in {s.name for s in score_steps_for(load_recipe(str(path)))}

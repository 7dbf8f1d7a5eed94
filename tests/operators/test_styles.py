"""Rule-based styler against the synthetic pool's known answer formats, and the prompted one."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions
from operators.styles import (
    ANSWER_FORMATS,
    POOL_STYLE_TO_MMSSR,
    STYLES,
    PromptedStyler,
    PromptedStylerConfig,
    RuleStyler,
    parse_styles,
    rule_styles,
    style_rules,
)


def pool_rows(pool_dir) -> pa.Table:
    options = RecordOptions(media_root=str(pool_dir), source="pool", check_media=False)
    path = os.path.join(pool_dir, "pool.jsonl")
    return pa.concat_tables([rows for rows, _ in iter_chunk_tables(path, options)])


def qa(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_rule_styler_agrees_with_pool_answer_formats(small_pool):
    rows = pool_rows(small_pool)
    truth = pq.read_table(os.path.join(small_pool, "ground_truth.parquet")).to_pandas()
    expected = dict(zip(truth["id"], truth["style"].map(POOL_STYLE_TO_MMSSR), strict=True))
    styled = RuleStyler()(rows)
    agree = 0
    for row_id, styles in zip(styled["id"].to_pylist(), styled["styles"].to_pylist(), strict=True):
        formats = [s for s in styles if s in ANSWER_FORMATS]
        agree += formats == [expected[row_id]]
    assert styled.num_rows == rows.num_rows > 350
    assert agree / rows.num_rows >= 0.95
    # all three answer formats of the pool occur, so a constant styler could not pass
    assert {s for s in styled["styles"].to_pylist() for s in s} >= {
        "multi-choice",
        "yes/no",
        "word/short phrase",
    }


@pytest.mark.parametrize(
    ("question", "answer", "expected"),
    [
        ("Where is the dog? Give the bounding box.", "[0.12, 0.30, 0.55, 0.80]", {"coordinate"}),
        (
            "Describe the image.",
            "A red car is parked next to a small house. " * 2,
            {"short description"},
        ),
        ("Describe the image in detail.", "word " * 80 + ".", {"detailed description"}),
        ("Which is taller, A or B?", "B", {"word/short phrase", "comparison"}),
        (
            "How many apples remain? Think step by step.",
            "First, there are 5 apples. Then 2 are eaten. Therefore 3 remain.",
            {"short description", "chain-of-thought"},
        ),
        ("Is the sky blue?", "No, it is grey.", {"yes/no"}),
        ("What is shown? A. a cat B. a dog C. a bird", "B", {"multi-choice"}),
        (
            "What is written? Answer the question using a single word or phrase.",
            "exit",
            {"word/short phrase", "specified style"},
        ),
    ],
)
def test_rule_styles_cover_the_nine_styles(question, answer, expected):
    styles = rule_styles(qa(question, answer))
    assert set(styles) == expected
    assert [s for s in STYLES if s in styles] == styles  # canonical order


def test_parse_styles_reads_model_replies():
    assert parse_styles("word/short-phrase, specified style") == (
        ["word/short phrase", "specified style"],
        None,
    )
    assert parse_styles("Styles: multiple choice") == (["multi-choice"], None)
    assert parse_styles("chain-of-thought (step-by-step)") == (["chain-of-thought"], None)
    assert parse_styles("") == (None, "empty")
    assert parse_styles("The image shows a cat.") == (None, "no_style")


def make_fake_generate():
    """A deterministic stand-in generator: answers by the prompt's content, batches counted."""
    calls = []

    def generate(prompts):
        calls.append(len(prompts))
        return ["yes/no" if "yes or no" in p else "no idea" for p in prompts]

    generate.calls = calls
    return generate


def test_prompted_styler_batches_and_counts_unparsable():
    rows = [qa("Is it red? Answer yes or no.", "yes"), qa("What is it?", "cat")] * 5
    table = pa.table({"id": [str(i) for i in range(10)], "messages": rows})
    styler = PromptedStyler(PromptedStylerConfig(batch_size=4), make_fake_generate)
    out = styler(table)
    assert styler.generate.calls == [4, 4, 2]
    assert out["styles"].to_pylist() == [["yes/no"], None] * 5
    assert styler.stats == {"parsed": 5, "no_style": 5}


def test_style_rules_on_ray_keeps_rows(ray_session, small_pool):
    rows = pool_rows(small_pool)
    ds = style_rules(ray_session.data.from_arrow(rows))
    out = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow")))
    assert out.num_rows == rows.num_rows
    assert set(out.column_names) == set(rows.column_names) | {"styles"}
    mine = dict(zip(out["id"].to_pylist(), out["styles"].to_pylist(), strict=True))
    local = RuleStyler()(rows)
    assert mine == dict(zip(local["id"].to_pylist(), local["styles"].to_pylist(), strict=True))

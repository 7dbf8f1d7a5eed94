"""The vLLM generation backend's own logic: prompts with media, requests, the row round trip
through the engine's reply columns, the descriptors from replies, and the processor config.

vLLM itself needs a GPU for vision models and is not installed here; the engine stage is
Ray's (`ray.data.llm`). What runs here is everything around it: what we send, and how the
replies become descriptor columns on the original rows.
"""

from __future__ import annotations

import base64
import itertools

import numpy as np
import pyarrow as pa
import pytest

from operators.schema import ROW_SCHEMA
from operators.vllm_generation import (
    ROW_BLOB,
    ROW_KEY,
    VllmConfig,
    _collect,
    _expand,
    _postprocess,
    chat_messages,
    descriptors_from_replies,
    processor_config,
    requests_for_row,
)
from operators.vlm_scoring import word_jaccard
from ray_jobs import synthetic_media as sm


def _row(row_id: str, media_type: str, media: list[str], question: str, answer: str) -> dict:
    return {
        "id": row_id,
        "source": "t",
        "media_type": media_type,
        "media": media,
        "video_id": None,
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
        "category": "general",
        "answer": answer,
        "extra": None,
        "origin": f"t.jsonl:{row_id}",
    }


@pytest.fixture
def media(tmp_path):
    image = tmp_path / "red.png"
    sm.save_image(
        sm.render_shapes([{"shape": "circle", "color": "red", "x": 32, "y": 32, "r": 16}]),
        str(image),
    )
    video = tmp_path / "move.mp4"
    obj = {"shape": "square", "color": "blue", "x": 20, "y": 32, "r": 10}
    sm.save_video(sm.render_video_frames(obj, "right", 8), str(video))
    return str(image), str(video)


def test_chat_messages_put_the_media_bytes_where_the_placeholder_was(media):
    image, video = media
    row = _row("a", "image", [image], "Look: <image>\nWhat color is it?", "red")
    messages = chat_messages(row)
    assert len(messages) == 1 and messages[0]["role"] == "user"  # the answer is not sent
    parts = messages[0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text"]
    assert parts[0]["text"] == "Look:" and parts[2]["text"] == "What color is it?"
    header, data = parts[1]["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    with open(image, "rb") as handle:
        assert base64.b64decode(data) == handle.read()
    clip = chat_messages(_row("v", "video", [video], "Which way does it move?", "right"))
    kinds = [p["type"] for p in clip[0]["content"]]
    assert kinds == ["video_url", "text"]  # media without a placeholder go first
    assert clip[0]["content"][0]["video_url"]["url"].startswith("data:video/mp4;base64,")


def test_requests_sample_with_distinct_fixed_seeds_and_ask_videos_the_temporal_prompt(media):
    image, video = media
    config = VllmConfig(model="m", samples=5)
    picture = requests_for_row(
        _row("a", "image", [image], "<image>Color?", "red"), "0:1", b"x", config
    )
    assert [r["_request"] for r in picture] == [f"stability:{k}" for k in range(5)]
    seeds = [r["sampling_params"]["seed"] for r in picture]
    assert len(set(seeds)) == 5
    again = requests_for_row(
        _row("a", "image", [image], "<image>Color?", "red"), "0:1", b"x", config
    )
    assert [r["sampling_params"]["seed"] for r in again] == seeds  # reproducible
    assert {r[ROW_KEY] for r in picture} == {"0:1"} and {r[ROW_BLOB] for r in picture} == {b"x"}
    params = picture[0]["sampling_params"]
    assert (params["temperature"], params["top_p"], params["max_tokens"]) == (0.8, 0.9, 32)
    clip = requests_for_row(
        _row("v", "video", [video], "<video>Which way?", "right"), "k", b"x", config
    )
    assert len(clip) == 6 and clip[-1]["_request"] == "temporal"
    prompt = clip[-1]["messages"][0]["content"][0]["text"]
    assert (
        "Which way?" in prompt
        and "<video>" not in prompt
        and prompt.endswith("Temporal or Static.")
    )
    assert clip[-1]["sampling_params"]["temperature"] == 0.0
    assert set(clip[-1]["sampling_params"]) == set(params)  # one struct type in Arrow
    no_temporal = VllmConfig(model="m", samples=2, prompted_temporal=False)
    assert (
        len(requests_for_row(_row("v", "video", [video], "<video>?", "r"), "k", b"x", no_temporal))
        == 2
    )


def test_descriptors_from_replies_match_the_definitions():
    texts = ["a red ball", "the red ball", "blue"]
    replies = [{"_request": f"stability:{k}", "text": t, "error": ""} for k, t in enumerate(texts)]
    expected = np.mean([word_jaccard(a, b) for a, b in itertools.combinations(texts, 2)])
    temporal = {"_request": "temporal", "text": "Temporal.", "error": ""}
    values = descriptors_from_replies([*replies, temporal], is_video=True)
    assert values["stability"] == pytest.approx(expected) and values["temporal_prompted"] == 1.0
    assert descriptors_from_replies(replies, is_video=False)["temporal_prompted"] == 0.0
    failed = [{**r, "error": "engine died"} for r in replies]
    values = descriptors_from_replies(failed, is_video=False)
    assert np.isnan(values["stability"]) and values["error"] == "engine died"


def _replies(requests: pa.Table) -> list[dict]:
    """What the processor hands to postprocess: each request with the engine's text."""
    out = []
    for request in requests.to_pylist():
        text = (
            "Static"
            if request["_request"] == "temporal"
            else f"blue {request['sampling_params']['seed'] % 3}"
        )
        out.append(_postprocess({**request, "generated_text": text, "__inference_error__": ""}))
    return out


def test_rows_come_back_whole_with_their_descriptors(media):
    image, video = media
    rows = [
        _row("a", "image", [image], "<image>Color?", "red"),
        _row("v", "video", [video], "<video>Which way?", "right"),
        {
            **_row("n", "text", [], "Say hi", "hi"),
            "messages": [{"role": "user", "content": "Say hi"}],
            "answer": None,
        },
        _row("f", "image", [image], "<image>Color?", "red"),
    ]
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    table = table.append_column("loss", pa.array([1.0, 2.0, None, None], pa.float64()))
    table = table.append_column(
        "score_error", pa.array([None, None, None, "undecodable_media"], pa.string())
    )
    config = VllmConfig(model="m", samples=3)
    requests = _expand(table, config)
    replies = _replies(requests)
    by_row: dict[str, list[dict]] = {}
    for reply in replies:
        by_row.setdefault(reply[ROW_KEY], []).append(reply)
    assert sorted(len(v) for v in by_row.values()) == [1, 1, 3, 4]  # 2 placeholders, image, video
    out = pa.concat_tables(
        [_collect(pa.Table.from_pylist(v)) for v in by_row.values()], promote_options="default"
    )
    got = {r["id"]: r for r in out.to_pylist()}
    assert set(got) == {"a", "v", "n", "f"}
    for original in table.to_pylist():  # every input column comes back unchanged
        assert {k: got[original["id"]][k] for k in original} == original
    samples = [
        f"blue {s % 3}"
        for s in (r["sampling_params"]["seed"] for r in requests.to_pylist() if r[ROW_KEY] == "a")
    ]
    expected = np.mean([word_jaccard(x, y) for x, y in itertools.combinations(samples, 2)])
    assert got["a"]["stability"] == pytest.approx(expected) and got["a"]["temporal_prompted"] == 0.0
    assert got["v"]["temporal_prompted"] == 0.0 and got["v"]["stability"] is not None
    assert got["n"]["stability"] is None and got["n"]["model_error"].startswith("vllm: no_answer")
    assert "stability" not in got["f"] or got["f"]["stability"] is None  # failed earlier: untouched


def test_processor_config_keeps_remote_code_off_and_limits_media(ray_session):
    from ray.data.llm import build_processor

    config = processor_config(VllmConfig(model="/models/proxy", concurrency=(1, 4), num_frames=6))
    assert config.model_source == "/models/proxy"
    assert config.engine_kwargs["trust_remote_code"] is False
    assert config.engine_kwargs["limit_mm_per_prompt"] == {"image": 1, "video": 1}
    assert config.engine_kwargs["media_io_kwargs"] == {"video": {"num_frames": 6}}
    assert tuple(config.concurrency) == (1, 4) and config.should_continue_on_error
    assert build_processor(config) is not None

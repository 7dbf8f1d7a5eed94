"""One picture a processor refuses (a 6000x20 banner: aspect ratio over 200) fails only its
row in every step that batches processor calls (model descriptors, OST, the warm-up's
encoding), and tiny pictures (1x1, 4x4) reach the processor as RGB, not read channels-first."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from operators.formats.records import RowError
from operators.model_descriptors import DescriptorConfig, ModelDescriptors
from operators.ost import OneStepUtility, OstConfig
from operators.schema import ROW_SCHEMA
from operators.vlm_inputs import InputsConfig, decode_media, encode_row, encode_rows
from operators.vlm_runtime import RuntimeConfig
from training.sft import _encode as sft_encode
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

torch.set_num_threads(1)
COLOR = (200, 10, 60)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("qwen")), TinyConfig.micro())


@pytest.fixture(scope="module")
def processor(model_path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_path)


def _row(path, row_id: str) -> dict:
    return {
        "id": row_id,
        "source": "s",
        "media_type": "image",
        "media": [str(path)],
        "video_id": None,
        "messages": [
            {"role": "user", "content": "<image>\nWhat colour is it?"},
            {"role": "assistant", "content": "red"},
        ],
        "category": None,
        "answer": "red",
        "extra": "{}",
        "origin": f"pool.jsonl:{row_id}",
    }


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """[good, banner, good]: the banner is a valid 6000x20 PNG."""
    folder = tmp_path_factory.mktemp("pictures")
    Image.new("RGB", (32, 32), COLOR).save(folder / "square.png")
    Image.new("RGB", (6000, 20), COLOR).save(folder / "banner.png")
    Image.new("RGB", (40, 24), (10, 200, 10)).save(folder / "green.png")
    names = ("square", "banner", "green")
    return [_row(folder / f"{name}.png", name) for name in names]


def _media(rows):
    return [decode_media(r, 8) for r in rows]


def test_a_refused_picture_fails_only_its_row(processor, rows):
    results = encode_rows(processor, rows, _media(rows))
    assert isinstance(results[1], RowError) and results[1].reason == "processor_error"
    assert "aspect ratio" in str(results[1])
    for k in (0, 2):
        alone = encode_row(processor, rows[k], _media(rows)[k])
        assert results[k].prompt_ids == alone.prompt_ids
        assert torch.equal(results[k].media["pixel_values"], alone.media["pixel_values"])


@pytest.mark.parametrize("size", [1, 4])
def test_tiny_pictures_are_read_as_rgb(processor, rows, size):
    """A solid 1x1 or 4x4 picture gives the pixels and grid of the same solid 32x32 one."""
    reference = encode_row(processor, rows[0], _media(rows[:1])[0])
    tiny = encode_row(processor, rows[0], [np.full((size, size, 3), COLOR, np.uint8)])
    assert torch.equal(tiny.media["image_grid_thw"], reference.media["image_grid_thw"])
    assert torch.allclose(tiny.media["pixel_values"], reference.media["pixel_values"], atol=1e-2)


def test_model_descriptors_quarantine_only_the_banner(model_path, rows):
    config = DescriptorConfig(RuntimeConfig(model_path), descriptors=("loss",))
    out = ModelDescriptors(config)(pa.Table.from_pylist(rows, schema=ROW_SCHEMA))
    errors = out.column("model_error").to_pylist()
    assert errors[0] is None and errors[2] is None
    assert errors[1].startswith("processor_error: ValueError") and "aspect ratio" in errors[1]
    loss = out.column("loss").to_pylist()
    assert loss[1] is None and np.isfinite([loss[0], loss[2]]).all()


def test_ost_scores_the_rest_of_the_batch(model_path, rows, tmp_path):
    pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA), tmp_path / "pool.parquet")
    (tmp_path / "target.txt").write_text("square\ngreen\n")
    config = OstConfig(
        RuntimeConfig(model_path),
        str(tmp_path / "pool.parquet"),
        target_ids=str(tmp_path / "target.txt"),
    )
    out = OneStepUtility(config)(pa.Table.from_pylist(rows, schema=ROW_SCHEMA))
    errors = out.column("ost_error").to_pylist()
    assert errors[0] is None and errors[2] is None and errors[1].startswith("processor_error")
    values = out.column("ost_utility").to_pylist()
    assert values[1] is None and np.isfinite([values[0], values[2]]).all()


def test_sft_and_warm_up_encoding_skip_only_the_banner(processor, rows):
    """The warm-up trains with the SFT loop (training/warmup.py), whose per-step encoding
    skips a row the processor refuses and trains the rest."""
    runtime = SimpleNamespace(processor=processor)
    config = SimpleNamespace(inputs=InputsConfig())
    positioned = [{**row, "position": k} for k, row in enumerate(rows)]
    encodings, skipped = sft_encode(runtime, positioned, config, cache={})
    assert len(encodings) == 2 and skipped == {"processor_error": 1}

"""ModelDescriptors: values against independent runtime passes, bad rows kept with reasons,
and the actor-pool stage over the synthetic pool on local Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions
from operators.model_descriptors import (
    FLOAT_COLUMNS,
    DescriptorConfig,
    ModelDescriptors,
    apply_model_descriptors,
    prompted_temporal_value,
)
from operators.pism import PismConfig
from operators.schema import ROW_SCHEMA
from operators.vlm_inputs import decode_media, encode_row, frame_order
from operators.vlm_runtime import RuntimeConfig
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("qwen")), TinyConfig.micro())


def _config(path: str, **kwargs) -> DescriptorConfig:
    return DescriptorConfig(
        RuntimeConfig(path),
        stability_samples=3,
        stability_tokens=8,
        cmab_tokens=4,
        pism=PismConfig(masks_per_ratio=2),
        **kwargs,
    )


@pytest.fixture(scope="module")
def rows(small_pool):
    options = RecordOptions(media_root=str(small_pool))
    tables = [t for t, _ in iter_chunk_tables(str(small_pool / "pool.jsonl"), options)]
    good = [r for t in tables for r in t.to_pylist()]
    image = next(r for r in good if r["media_type"] == "image")
    videos = [r for r in good if r["media_type"] == "video"][:3]
    text = {
        **image,
        "id": "text-1",
        "media_type": "text",
        "media": [],
        "messages": [
            {"role": "user", "content": "Is the sky blue? Answer yes or no."},
            {"role": "assistant", "content": "yes"},
        ],
        "answer": "yes",
    }
    missing = {**image, "id": "missing-1", "media": ["/nonexistent/x.png"]}
    extra = {**image, "id": "extra-1"}
    extra["messages"] = [{**image["messages"][0], "content": "<image><image> Q?"}]
    extra["messages"].append(image["messages"][1])
    return good[:6] + videos + [text, missing, extra]


def _batch(rows):
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def test_descriptor_values_and_bad_rows(model_path, rows):
    op = ModelDescriptors(_config(model_path))
    out = op(_batch(rows))
    assert out["id"].tolist() == [r["id"] for r in rows]  # every row back, in order
    errors = dict(zip(out["id"].tolist(), out["model_error"].tolist(), strict=True))
    assert errors["missing-1"].startswith("media:")
    assert errors["extra-1"].startswith("placeholder_mismatch:")
    for name in FLOAT_COLUMNS:
        assert np.isnan(out[name][-2:]).all()
    ok = [i for i, e in enumerate(out["model_error"]) if e is None]
    assert len(ok) == len(rows) - 2
    assert op.counts["total"] == len(rows) and op.counts["scored"] == len(ok)
    runtime, inputs = op.runtime, op.runtime.config.inputs
    for i in ok:
        row, loss = rows[i], out["loss"][i]
        media = decode_media(row, 8)
        alone, _ = runtime.nll([encode_row(runtime.processor, row, media)])
        assert loss == pytest.approx(alone[0], abs=1e-4)
        assert out["vds"][i] == pytest.approx(out["loss_blind"][i] - loss, abs=1e-12)
        assert out["ppl"][i] == pytest.approx(np.exp(loss))
        if row["media_type"] == "video":
            order = frame_order(len(media[0]), row["id"], "shuffled")
            shuffled = encode_row(runtime.processor, row, [media[0][order]], inputs)
            expected = runtime.nll([shuffled])[0][0] - alone[0]
            assert out["temporal_loss_gap"][i] == pytest.approx(expected, abs=1e-4)
        else:
            assert out["temporal_loss_gap"][i] == 0.0
        assert 0.0 <= out["stability"][i] <= 1.0
        assert out["pism_label"][i] in ("easy", "medium", "hard", "unsolved")
        assert out["pism_label"][i] == (
            "unsolved" if out["pism_lambda"][i] == 0 else out["pism_label"][i]
        )
        assert out["cmab_label"][i] in ("easy", "medium", "hard")
    text = [r["id"] for r in rows].index("text-1")
    assert out["vds"][text] == 0.0 and out["temporal_loss_gap"][text] == 0.0


def test_arrow_batches_keep_schema_and_write_nulls(model_path, rows):
    table = pa.Table.from_pylist(rows[-3:], schema=ROW_SCHEMA)
    out = ModelDescriptors(_config(model_path, descriptors=("loss",)))(table)
    assert out.schema.names[: len(ROW_SCHEMA)] == ROW_SCHEMA.names
    assert out.select(ROW_SCHEMA.names).equals(table)
    assert out.column("loss").null_count == 2  # the two bad rows
    assert out.column("model_error").to_pylist()[0] is None


def test_switched_off_groups_stay_nan(model_path, rows):
    out = ModelDescriptors(_config(model_path, descriptors=("loss",)))(_batch(rows[:3]))
    assert np.isfinite(out["loss"]).all()
    for name in ("temporal_loss_gap", "stability", "pism_lambda", "cmab_ratio"):
        assert np.isnan(out[name]).all()


def test_prompted_temporal_parsing():
    assert prompted_temporal_value(" Temporal, because") == 1.0
    assert prompted_temporal_value("STATIC") == 0.0
    assert prompted_temporal_value("") == 0.5


@pytest.mark.slow
def test_actor_pool_stage_over_pool(ray_session, small_pool, model_path, tmp_path):
    from ray_jobs.ingest import IngestConfig, ingest

    counts = ingest(IngestConfig(str(small_pool / "pool.jsonl"), str(tmp_path / "run")))
    ds = ray_session.data.read_parquet(str(tmp_path / "run" / "pool"), file_extensions=["parquet"])
    config = _config(model_path, descriptors=("loss", "temporal", "pism", "cmab"))
    scored = apply_model_descriptors(ds, config, min_actors=1, max_actors=2, batch_size=64)
    result = pa.concat_tables(ray_session.get(scored.to_arrow_refs()))
    pool = pa.concat_tables(ray_session.get(ds.to_arrow_refs()))
    assert result.num_rows == pool.num_rows == counts["kept"] > 300
    assert sorted(result.column("id").to_pylist()) == sorted(pool.column("id").to_pylist())
    assert result.schema.field("media").type == pa.list_(pa.string())  # input schema kept
    assert result.column("model_error").null_count == result.num_rows
    assert result.column("stability").null_count == result.num_rows  # group switched off
    labels = result.column("pism_label").to_pylist()
    assert all(label in ("easy", "medium", "hard", "unsolved") for label in labels)
    assert all(
        label in ("easy", "medium", "hard") for label in result.column("cmab_label").to_pylist()
    )
    temporal = np.array(result.column("temporal_loss_gap").to_pylist())
    video = np.array(result.column("media_type").to_pylist()) == "video"
    assert (temporal[~video] == 0).all() and (temporal[video] != 0).any()


def _stability(model_path, rows, seed=0) -> dict:
    config = DescriptorConfig(
        RuntimeConfig(model_path),
        descriptors=("stability",),
        stability_samples=4,
        stability_tokens=12,
        stability_temperature=0.1,
        stability_top_p=1.0,
        seed=seed,
    )
    out = ModelDescriptors(config)(pa.Table.from_pylist(rows, schema=ROW_SCHEMA))
    return dict(zip(out.column("id").to_pylist(), out.column("stability").to_pylist(), strict=True))


def test_stability_is_seeded_per_row_not_per_batch_or_actor(model_path, rows):
    """Per-row seeds (seed, row id, sample index): the same value in any batch order or
    composition, on a fresh actor; another seed gives other values."""
    rows = rows[:4] + rows[6:8]  # images and videos
    whole = _stability(model_path, rows)
    assert len(set(whole.values())) > 1  # the samples are random enough to tell rows apart
    reversed_order = _stability(model_path, rows[::-1])
    halves = {**_stability(model_path, rows[3:]), **_stability(model_path, rows[:3])}
    alone = _stability(model_path, rows[2:3])
    assert reversed_order == whole and halves == whole
    assert alone == {rows[2]["id"]: whole[rows[2]["id"]]}
    other_seed = _stability(model_path, rows, seed=7)
    assert not np.allclose(list(other_seed.values()), list(whole.values()))

"""OST one-step utility: exact Δ against a hand-made SGD step, first order against plain
autograd dot products, JL behaviour of the projection, the stratified target, and the actor
pool on local Ray (every row scored or null with a reason)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions
from operators.ost import (
    OneStepUtility,
    OstConfig,
    SparseSignProjection,
    stratified_target,
)
from operators.schema import ROW_SCHEMA
from operators.vlm_inputs import collate, decode_media, encode_row
from operators.vlm_runtime import RuntimeConfig
from operators.vlm_scoring import answer_nll
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

torch.set_num_threads(1)
LAST_BLOCK = ("model.language_model.layers.1.", "lm_head")  # loop path (not vmappable)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("qwen")), TinyConfig.micro())


@pytest.fixture(scope="module")
def rows(small_pool):
    options = RecordOptions(media_root=str(small_pool))
    tables = [t for t, _ in iter_chunk_tables(str(small_pool / "pool.jsonl"), options)]
    good = [r for t in tables for r in t.to_pylist()]
    images = [r for r in good if r["media_type"] == "image"][:10]
    videos = [r for r in good if r["media_type"] == "video"][:3]
    return images + videos


@pytest.fixture(scope="module")
def pool(rows, tmp_path_factory):
    """A pool file of the rows and a target-id file naming four of them."""
    out = tmp_path_factory.mktemp("ostpool")
    pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA), str(out / "pool.parquet"))
    target = [rows[k]["id"] for k in (0, 3, 6, 11)]
    (out / "target.txt").write_text("\n".join(target) + "\n")
    return out, target


def _config(model_path, pool, **kwargs) -> OstConfig:
    out, _ = pool
    return OstConfig(
        RuntimeConfig(model_path),
        str(out / "pool.parquet"),
        target_ids=str(out / "target.txt"),
        **kwargs,
    )


class HandModel:
    """The proxy with its head untied, trained and differentiated by plain autograd."""

    def __init__(self, model_path, rows, target_ids, subset):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model = AutoModelForImageTextToText.from_pretrained(model_path).eval()
        head = self.model.lm_head
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.params = [p for n, p in self.model.named_parameters() if n.startswith(subset)]
        self.target = [r for r in rows if r["id"] in target_ids]

    def loss(self, rows) -> torch.Tensor:
        encodings = [encode_row(self.processor, r, decode_media(r, 8)) for r in rows]
        batch = collate(encodings, self.processor)
        return answer_nll(self.model(**batch.inputs).logits, batch.labels)[0].mean()

    def grad(self, rows) -> torch.Tensor:
        grads = torch.autograd.grad(self.loss(rows), self.params)
        return torch.cat([g.reshape(-1) for g in grads])

    def sgd_delta(self, row, eta: float) -> float:
        """L_V before minus L_V after one SGD step on `row` alone."""
        with torch.no_grad():
            before = float(self.loss(self.target))
        step = self.grad([row])
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            start = 0
            for p in self.params:
                p -= eta * step[start : start + p.numel()].reshape(p.shape)
                start += p.numel()
            after = float(self.loss(self.target))
            for p, s in zip(self.params, saved, strict=True):
                p.copy_(s)
        return before - after


@pytest.mark.parametrize("subset", [("lm_head",), LAST_BLOCK], ids=["head_vmap", "block_loop"])
def test_exact_equals_hand_sgd_step(model_path, rows, pool, subset):
    config = _config(model_path, pool, form="exact", eta=0.2, params=subset)
    op = OneStepUtility(config)
    assert op.head_path == (subset == ("lm_head",))
    chosen = [rows[1], rows[6], rows[12]]  # an image, a target row, a video
    got = op._score(chosen)[0]
    hand = HandModel(model_path, rows, pool[1], subset)
    want = np.array([hand.sgd_delta(r, 0.2) for r in chosen])
    assert np.abs(want).min() > 1e-4  # a real step, not rounding noise
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-6)


@pytest.mark.parametrize("subset", [("lm_head",), LAST_BLOCK], ids=["head_vmap", "block_loop"])
def test_first_order_equals_autograd_dot(model_path, rows, pool, subset):
    config = _config(model_path, pool, eta=0.01, params=subset, projection_dim=0)
    op = OneStepUtility(config)
    chosen = rows[:8]
    got = op._score(chosen)[0]
    hand = HandModel(model_path, rows, pool[1], subset)
    target = torch.stack([hand.grad([r]) for r in hand.target]).mean(0)
    want = np.array([0.01 * float(hand.grad([r]) @ target) for r in chosen])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7)


def test_first_order_tracks_exact_at_small_eta(model_path, rows, pool):
    exact = OneStepUtility(_config(model_path, pool, form="exact", eta=1e-3))._score(rows)[0]
    first = OneStepUtility(_config(model_path, pool, eta=1e-3, projection_dim=0))._score(rows)[0]
    np.testing.assert_allclose(first, exact, rtol=0.05, atol=1e-6)


def test_projection_preserves_inner_products():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 20_000, generator=gen)
    x[1] = 0.6 * x[0] + 0.8 * x[1]  # a correlated pair
    proj = SparseSignProjection(20_000, 4096, seed=7)
    px = proj(x)
    exact, approx = x @ x.T, px @ px.T
    scale = torch.outer(x.norm(dim=1), x.norm(dim=1))
    assert ((approx - exact).abs() / scale).max() < 0.08  # JL: error ~ 1/sqrt(k)
    assert abs(float(approx[0, 1] / scale[0, 1]) - 0.6) < 0.05
    torch.testing.assert_close(SparseSignProjection(20_000, 4096, seed=7)(x), px)
    assert not torch.allclose(SparseSignProjection(20_000, 4096, seed=8)(x), px)


def test_stratified_target_is_proportional_deterministic_and_held_out():
    ids = [f"r{i}" for i in range(100)]
    cats = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    chosen = stratified_target(ids, cats, 10, seed=3, exclude={"r0", "r1"})
    by = {c: sum(cats[ids.index(i)] == c for i in chosen) for c in "abc"}
    assert by == {"a": 5, "b": 3, "c": 2} and not {"r0", "r1"} & set(chosen)
    assert chosen == stratified_target(ids[::-1], cats[::-1], 10, seed=3, exclude={"r0", "r1"})
    assert chosen != stratified_target(ids, cats, 10, seed=4)


def test_actor_pool_adds_utility_to_every_row(ray_session, model_path, rows, pool):
    missing = {**rows[0], "id": "missing-1", "media": ["/nonexistent/x.png"]}
    extra = {**rows[0], "id": "extra-1"}
    extra["messages"] = [{**rows[0]["messages"][0], "content": "<image><image> Q?"}]
    extra["messages"].append(rows[0]["messages"][1])
    table = pa.Table.from_pylist(rows + [missing, extra], schema=ROW_SCHEMA)
    ds = ray_session.data.from_arrow(table).repartition(3)
    scored = ds.map_batches(
        OneStepUtility,
        fn_constructor_kwargs={"config": _config(model_path, pool, projection_dim=512)},
        compute=ray_session.data.ActorPoolStrategy(min_size=1, max_size=2),
        batch_size=6,
        batch_format="pyarrow",
    )
    result = pa.concat_tables(ray_session.get(scored.to_arrow_refs()))
    got = dict(zip(result.column("id").to_pylist(), result.to_pylist(), strict=True))
    assert sorted(got) == sorted(table.column("id").to_pylist())
    assert result.schema.field("media").type == pa.list_(pa.string())
    assert got["missing-1"]["ost_utility"] is None
    assert got["missing-1"]["ost_error"].startswith("media")
    assert got["extra-1"]["ost_error"].startswith("placeholder_mismatch")
    good = [got[r["id"]] for r in rows]
    assert all(r["ost_error"] is None and np.isfinite(r["ost_utility"]) for r in good)
    assert len({round(r["ost_utility"], 12) for r in good}) == len(good)
    # target rows: a step on a row of V lowers L_V
    assert min(got[i]["ost_utility"] for i in pool[1]) > 0


def test_score_stage_gets_an_ost_step(tmp_path):
    from ray_jobs.recipe import Recipe, ScoreSection
    from ray_jobs.stages import score_steps_for

    def step(ost: str):
        score = ScoreSection(ost=ost, text_embedding=False, capabilities="none", descriptors=())
        steps = score_steps_for(Recipe("r", "in.jsonl", str(tmp_path), score=score))
        return {s.name: s for s in steps}.get("ost_utility")

    assert step("none") is None
    config = step("exact").fn_constructor_kwargs["config"]
    assert config.form == "exact" and config.pool == str(tmp_path / "pool")
    assert config.exclude_ids == str(tmp_path / "proxy" / "train_ids.txt")
    assert step("first_order").fn is OneStepUtility


def test_target_set_from_a_clean_held_out_pool(small_pool, tmp_path):
    """V comes from the clean held-out pool (defect-free rows by its ground truth), not from
    the ranked pool, and the config says where it came from."""
    from operators.ost import OstConfig, target_rows, target_source

    truth = pq.read_table(small_pool / "ground_truth.parquet").to_pylist()
    defect = {t["id"]: t["defect"] for t in truth}
    assert sum(d != "none" for d in defect.values()) > 10  # wrong answers etc. are inside
    config = OstConfig(
        RuntimeConfig("unused"),
        pool=str(tmp_path / "ranked"),  # never read: V does not come from the ranked pool
        target_pool=str(small_pool),
        target_size=40,
    )
    rows = target_rows(config)
    assert len(rows) == 40 == len({r["id"] for r in rows})
    assert all(defect[r["id"]] == "none" for r in rows)
    assert "clean held-out pool" in target_source(config)
    assert rows == target_rows(config)  # fixed before the stage, the same on every actor


def test_recipe_names_the_clean_target_pool(tmp_path):
    from ray_jobs.recipe import Recipe, ScoreSection
    from ray_jobs.stages import score_steps_for

    score = ScoreSection(
        text_embedding=False, capabilities="none", descriptors=(), ost_target_pool="/held"
    )
    recipe = Recipe("r", "in.jsonl", str(tmp_path), score=score)
    steps = {s.name: s for s in score_steps_for(recipe)}
    assert steps["ost_utility"].fn_constructor_kwargs["config"].target_pool == "/held"

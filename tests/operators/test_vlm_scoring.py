"""Batched runtime passes against per-sample references computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from operators.formats.readers import iter_chunk_tables
from operators.formats.records import RecordOptions
from operators.vlm_inputs import RowEncoding, collate, decode_media, encode_row
from operators.vlm_runtime import RuntimeConfig, VLMRuntime, micro_batches
from operators.vlm_scoring import answer_nll, attention_mass_ratios, word_jaccard
from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    path = build_tiny_qwen2_vl(str(tmp_path_factory.mktemp("qwen")), TinyConfig.micro())
    # A small token budget forces several padded micro-batches of mixed lengths.
    return VLMRuntime(RuntimeConfig(path, token_budget=300, max_rows=3))


@pytest.fixture(scope="module")
def encodings(runtime, small_pool):
    options = RecordOptions(media_root=str(small_pool))
    tables = [t for t, _ in iter_chunk_tables(str(small_pool / "pool.jsonl"), options)]
    rows = [r for t in tables for r in t.to_pylist()][:10]
    out = [encode_row(runtime.processor, r, decode_media(r, 8)) for r in rows]
    out += [encode_row(runtime.processor, rows[0], None)]  # blind: text only
    return out


def _reference_nll(runtime, enc: RowEncoding) -> float:
    """Mean over answer tokens of -log softmax(logits at the previous position)[token]."""
    logits = runtime.forward(collate([enc], runtime.processor)).logits[0].double()
    start = len(enc.prompt_ids)
    total = 0.0
    for k, token in enumerate(enc.answer_ids):
        row = logits[start + k - 1]
        total += float(torch.logsumexp(row, 0) - row[token])
    return total / len(enc.answer_ids)


def test_batched_nll_matches_per_sample_reference(runtime, encodings):
    lengths = [len(e) for e in encodings]
    assert len(micro_batches(lengths, 300, 3)) > 3 and len(set(lengths)) > 3
    nll, _ = runtime.nll(encodings)
    reference = [_reference_nll(runtime, e) for e in encodings]
    np.testing.assert_allclose(nll, reference, rtol=1e-4, atol=1e-4)


def test_correct_means_greedy_reproduces_the_answer(runtime, encodings):
    generated = runtime.generate(encodings[:4], max_new_tokens=5)
    greedy = [
        RowEncoding(e.prompt_ids, g[0], e.token_fields, e.media)
        for e, g in zip(encodings[:4], generated, strict=True)
    ]
    _, correct = runtime.nll(greedy)
    assert correct.all()
    other = [
        RowEncoding(
            e.prompt_ids,
            e.answer_ids[:-1] + [20 if e.answer_ids[-1] != 20 else 21],
            e.token_fields,
            e.media,
        )
        for e in greedy
    ]
    _, wrong = runtime.nll(other)
    assert not wrong.any()


def test_answer_nll_on_constructed_logits():
    logits = torch.zeros(2, 4, 3)
    logits[0, 1] = torch.tensor([0.0, math.log(3.0), 0.0])  # p(token 1) = 3/5
    labels = torch.tensor([[-100, -100, 1, -100], [-100, -100, -100, -100]])
    nll, correct = answer_nll(logits, labels)
    assert nll[0].item() == pytest.approx(-math.log(3 / 5))
    assert math.isnan(nll[1].item())
    assert correct.tolist() == [True, False]


def test_attention_mass_ratios_match_loops():
    gen = torch.Generator().manual_seed(0)
    attn = [torch.softmax(torch.randn(2, 3, 5, 5, generator=gen), -1) for _ in range(2)]
    vision = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    query = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 1, 0]])
    ratios = attention_mass_ratios(tuple(attn), vision, mask, query)
    for b in range(2):
        for n in range(2):
            for q in range(5):
                if not query[b, q]:
                    assert math.isnan(ratios[b, n, q])
                    continue
                a = attn[n][b, :, q].mean(0)
                on_v = sum(a[k] for k in range(5) if vision[b, k] and mask[b, k])
                on_t = sum(a[k] for k in range(5) if not vision[b, k] and mask[b, k])
                assert ratios[b, n, q].item() == pytest.approx(float(on_v / on_t), rel=1e-5)


def test_attention_ratios_pass_shapes_and_positivity(runtime, encodings):
    ratios = runtime.attention_ratios(encodings[:3] + encodings[-1:])
    for r, e in zip(ratios[:3], encodings[:3], strict=True):
        assert r.shape == (runtime.num_layers, len(e.answer_ids))
        assert (r > 0).all() and np.isfinite(r).all()
    assert (ratios[-1] == 0).all()  # blind row: no vision positions
    assert runtime.model.config._attn_implementation == "sdpa"  # switched back


def test_word_jaccard():
    assert word_jaccard("red circle", "Red  circle") == 1.0
    assert word_jaccard("a b", "b c") == pytest.approx(1 / 3)
    assert word_jaccard("", "") == 1.0

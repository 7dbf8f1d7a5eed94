"""The base model's caption corpus: captions that name what the renderer drew, drawn from
lines no pool can hold (training/base_corpus.py)."""

from __future__ import annotations

import hashlib

import pyarrow.parquet as pq
import pytest

from ray_jobs.synth import synthesize
from ray_jobs.synthetic_pool import _spec, render
from training.base_corpus import FIRST_LINE, caption_of, write_corpus


def _words(text: str) -> set[str]:
    return set(text.replace(".", " ").replace(",", " ").replace(":", " ").replace('"', " ").split())


def test_captions_name_the_truth_of_every_category():
    seen = set()
    for k in range(400):
        spec = _spec(3, FIRST_LINE + k)
        category = spec["category"]
        words = _words(caption_of(spec, focus=False)[1])
        if category in ("temporal", "static_video"):
            assert {spec["color"], spec["shape"]} <= words
            motion = "still" if spec["direction"] == "still" else spec["direction"]
            assert motion in words
            assert motion in _words(caption_of(spec, focus=True)[1])
        elif category == "ocr":
            assert spec["word"] in words
            assert " ".join(spec["word"]) in caption_of(spec, focus=True)[1]
        elif category == "chart":
            values = [str(v) for v in spec["values"]]
            assert set(values) <= words
            assert spec["answer"] in words or spec["qtype"] == "value"
        elif spec["qtype"] == "count":
            assert spec["answer"] in words
            assert all(o["color"] in words and o["shape"] in words for o in spec["objects"])
        else:
            assert {spec["color"], spec["shape"]} <= words
        seen.add(category)
    assert seen == {"general", "chart", "ocr", "temporal", "static_video"}


def test_pools_cannot_reach_the_corpus_lines(tmp_path):
    with pytest.raises(ValueError, match="at most"):
        synthesize(FIRST_LINE + 1, str(tmp_path / "pool"), seed=0)


def test_corpus_media_rarely_equal_a_pool_or_heldout_medium():
    """The seed spaces are disjoint, but a picture is a function of a few values, so equal
    pictures occur by chance: shape pictures and videos of 1,500 corpus lines against a pool
    (seed 0) and its held-out set (seed 1000) of 1,500 lines each stay under 1% (1 still video
    here). Charts and words are left out: 504 distinct charts exist, and ~4,000 word pictures
    (20 words x ~9 font sizes x ~25 offsets), so ~10% of corpus word pictures have a copy in a
    3,000-line pool."""

    def digests(seed: int, lines) -> set[str]:
        out = set()
        for i in lines:
            spec = _spec(seed, i)
            if spec["category"] not in ("chart", "ocr"):
                out.add(hashlib.sha1(render(spec).tobytes()).hexdigest())
        return out

    corpus = digests(0, range(FIRST_LINE, FIRST_LINE + 1500))
    pools = digests(0, range(1500)) | digests(1000, range(1500))
    assert len(corpus) > 900 and len(pools) > 1800
    assert len(corpus & pools) < 0.01 * len(corpus)


def test_corpus_rows_are_ordered_captions_with_real_media(tmp_path):
    from operators.vlm_inputs import decode_media

    path = write_corpus(5, 40, str(tmp_path))
    table = pq.read_table(path)
    assert table.column("position").to_pylist() == list(range(40))
    lines = sorted(int(i.split("-")[-1]) for i in table.column("id").to_pylist())
    assert lines == list(range(FIRST_LINE, FIRST_LINE + 40))
    rows = table.to_pylist()
    for row in rows:
        media = decode_media(row, 8)
        assert len(media) == 1
        assert media[0].ndim == (4 if row["media_type"] == "video" else 3)
        assert row["messages"][1]["content"] == row["answer"]
    assert (
        pq.read_table(write_corpus(5, 40, str(tmp_path / "again"))).column("answer").to_pylist()
        == table.column("answer").to_pylist()
    )

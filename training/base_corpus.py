"""The caption corpus the synthetic world's base model is pretrained on (LLaVA's alignment stage).

Each corpus row is one picture or video of the synthetic renderer with a description of it:
the colours and shapes, how many shapes, every bar's height and the tallest bar, the written
word, and how the object moves. The rows are captions, not the pool's QA: no context sentence,
no question, no answer-format hint, and the answer words appear inside full sentences.

Directions and OCR words are the hard parts for a ~1M-parameter model. The curriculum isolates
them: a video row is asked, in half of the rows, to describe only the motion ("The object moves
left."), and a word row to spell the word it shows (the word, then its letters), so the answer
tokens of those rows depend on the pixels alone.

Disjointness: a row's media parameters are the pool generator's own draws (`_spec`) at line
indices from `FIRST_LINE` = 2**40 on; `ray_jobs.synth.synthesize` refuses pools of more than
`FIRST_LINE` lines, so no pool, held-out set or benchmark pool (any seed) ever draws a
corpus line. Pictures, a function of a few values, still coincide by chance: under 1% of shape
pictures and videos (tests/training/test_base_corpus.py), while there are only 504 distinct
charts and ~4,000 word pictures, so ~10% of the corpus's word pictures have an equal in a
3,000-line pool.

Videos are written losslessly (H.264 crf 0): at the pool's crf 18, x264's output varies from
one encode of the same frames to the next (2 of 24 videos differed between two encodes in one
process here), which would make the build depend on the machine's load.
"""

from __future__ import annotations

import os

import numpy as np

from operators.schema import rows_table
from ray_jobs import synthetic_media as sm
from ray_jobs.synthetic_pool import _spec, render

__all__ = ["FIRST_LINE", "caption_rows", "caption_of", "write_corpus"]

FIRST_LINE = 2**40  # corpus lines are >= this; pools hold lines < this

DESCRIBE = {
    "image": ("Describe the image.", "Write a short caption for this picture."),
    "video": ("Describe the video.", "Write a short caption for this clip."),
}
FOCUS = {
    "direction": "Describe how the object moves in the video.",
    "word": "Spell the word written in the image.",
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four")


def _motion(direction: str) -> str:
    return "stays still" if direction == "still" else f"moves {direction}"


def _listing(objects: list[dict]) -> str:
    names = [f"a {o['color']} {o['shape']}" for o in objects]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def caption_of(spec: dict, focus: bool) -> tuple[str, str]:
    """(prompt, caption) for a spec of the pool generator; `focus` asks about the hard part
    only (the motion of a video, the spelling of a word)."""
    category = spec["category"]
    if category in ("temporal", "static_video"):
        if focus:
            return FOCUS["direction"], f"The object {_motion(spec['direction'])}."
        prompt = DESCRIBE["video"][spec["template"] % 2]
        return prompt, f"A {spec['color']} {spec['shape']} {_motion(spec['direction'])}."
    if category == "ocr":
        word = spec["word"]
        if focus:
            return FOCUS["word"], f"{word}: {' '.join(word)}."
        return DESCRIBE["image"][spec["template"] % 2], f'The word "{word}" in black letters.'
    prompt = DESCRIBE["image"][spec["template"] % 2]
    if category == "chart":
        values = spec["values"]
        bars = ", ".join(f"bar {'ABC'[k]} is {v}" for k, v in enumerate(values))
        tallest = "ABC"[int(np.argmax(values))]
        return prompt, f"A bar chart: {bars}. Bar {tallest} is the tallest."
    objects = spec["objects"]
    count = len(objects)
    if count == 1 and spec["qtype"] != "count":
        return prompt, f"A {objects[0]['color']} {objects[0]['shape']}."
    noun = "shape" if count == 1 else "shapes"
    return prompt, f"{count} {noun} ({NUMBER_WORDS[count]}): {_listing(objects)}."


def caption_rows(seed: int, size: int, media_dir: str) -> list[dict]:
    """Write the media of corpus lines FIRST_LINE .. FIRST_LINE + size - 1 under `media_dir`
    and return their ROW_SCHEMA rows (absolute media paths)."""
    os.makedirs(media_dir, exist_ok=True)
    rows = []
    for k in range(size):
        line = FIRST_LINE + k
        spec = _spec(seed, line)
        video = spec["category"] in ("temporal", "static_video")
        focus = spec["category"] in ("temporal", "static_video", "ocr") and k % 2 == 1
        prompt, caption = caption_of(spec, focus)
        path = os.path.join(os.path.abspath(media_dir), f"{k:07d}{'.mp4' if video else '.png'}")
        pixels = render(spec)
        if video:
            sm.save_video(pixels, path, crf=0)  # lossless: the decoded frames are reproducible
        else:
            sm.save_image(pixels, path)
        key = "video" if video else "image"
        rows.append(
            {
                "id": f"base-{seed}-{line}",
                "source": "synthetic_caption",
                "media_type": key,
                "media": [path],
                "video_id": None,
                "messages": [
                    {"role": "user", "content": f"<{key}>\n{prompt}"},
                    {"role": "assistant", "content": caption},
                ],
                "category": spec["category"],
                "answer": caption,
                "extra": "{}",
                "origin": f"synthetic_caption:{seed}:{line}",
            }
        )
    return rows


def write_corpus(seed: int, size: int, out: str) -> str:
    """Write `out/rows.parquet` (rows in a seeded shuffled order, with SFT's `position`) and
    `out/media/`; return the Parquet path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = caption_rows(seed, size, os.path.join(out, "media"))
    order = np.random.default_rng([seed, FIRST_LINE]).permutation(len(rows))
    table = rows_table([rows[i] for i in order])
    table = table.append_column("position", pa.array(range(table.num_rows), pa.int64()))
    path = os.path.join(out, "rows.parquet")
    pq.write_table(table, path)
    return path

"""A deterministic synthetic pool with ground truth, standing in for LLaVA-OneVision / -Video.

Line i of the pool is a pure function of (seed, i): its category, its defect, its media and
its text. Clean samples of five categories (general, chart, ocr, temporal, static_video) are
mixed with injected defects at stated rates (`DEFECT_RATES`); each line's truth goes to
`ground_truth.parquet`, which the pool itself does not contain. Questions carry a random
context sentence so that distinct samples have distinct text, as real instruction data does,
while near duplicates (rewording, 5-20% word edits, resized / re-encoded media) stay close.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ray_jobs import synthetic_media as sm

__all__ = ["CATEGORY_WEIGHTS", "DEFECT_RATES", "generate_line"]

CATEGORY_WEIGHTS = {
    "general": 0.35,
    "chart": 0.15,
    "ocr": 0.15,
    "temporal": 0.2,
    "static_video": 0.15,
}
DEFECT_RATES = {
    "exact_dup": 0.03,
    "near_dup": 0.06,
    "wrong_answer": 0.08,
    "text_answerable": 0.05,
    "corrupt_media": 0.005,
    "missing_media": 0.005,
    "malformed": 0.005,
    "path_escape": 0.005,
}
WORDS = (
    "cat",
    "dog",
    "sun",
    "tree",
    "car",
    "fish",
    "bird",
    "book",
    "milk",
    "star",
    "moon",
    "rain",
    "ship",
    "lamp",
    "door",
    "hat",
    "cup",
    "key",
    "box",
    "pen",
)
DIRECTIONS = ("left", "right", "up", "down", "still")
CONTEXT_NOUNS = (
    "archive",
    "collection",
    "survey",
    "notebook",
    "album",
    "catalog",
    "report",
    "exhibit",
    "dataset",
    "folder",
    "workshop",
    "lesson",
    "project",
    "gallery",
)
CONTEXT_TOPICS = (
    "geometry",
    "weather",
    "travel",
    "cooking",
    "sports",
    "music",
    "history",
    "gardening",
    "robots",
    "oceans",
    "trains",
    "painting",
    "science",
    "maps",
    "animals",
    "puzzles",
    "markets",
    "festivals",
    "bridges",
    "forests",
)
CONTEXT_ADJ = (
    "small",
    "large",
    "old",
    "recent",
    "shared",
    "private",
    "annual",
    "weekly",
    "classroom",
    "online",
    "printed",
    "scanned",
)

ASK = {
    "color": (
        "What color is the {shape} in the {media}?",
        "Which color does the {shape} shown in this {media} have?",
        "Tell me the color of the {shape} that appears in the {media}.",
    ),
    "shape": (
        "What shape is drawn in the {media}?",
        "Which geometric shape can you see in this {media}?",
        "Name the shape that appears in the {media}.",
    ),
    "count": (
        "How many shapes are there in the {media}?",
        "Count the shapes drawn in this {media}. How many are there?",
        "What is the number of shapes visible in the {media}?",
    ),
    "tallest": (
        "Which bar is the tallest in the chart?",
        "In this bar chart, which bar has the largest value?",
        "Look at the bars of the chart and name the highest one.",
    ),
    "value": (
        "What is the value of bar {bar} in the chart?",
        "Read the chart: how high is bar {bar}?",
        "According to the bar chart, what value does bar {bar} show?",
    ),
    "word": (
        "What word is written in the image?",
        "Read the text in this image. Which word is it?",
        "Which word can you read in the picture?",
    ),
    "direction": (
        "Which direction does the {color} {shape} move in the video?",
        "In this clip, where is the {color} {shape} moving?",
        "Watch the video: in which direction does the {color} {shape} travel?",
    ),
    "static_color": (
        "What color is the {shape} in the video?",
        "Which color does the {shape} in this clip have?",
        "Tell me the color of the {shape} shown in the video.",
    ),
}
HINT = {
    "word/short phrase": "Answer with a single word.",
    "number": "Answer with a number.",
    "yes/no": "Answer yes or no.",
    "multi-choice": "Answer with the option's letter from the given choices directly.",
}
ANSWER_SETS = {
    "color": tuple(sm.COLORS),
    "static_color": tuple(sm.COLORS),
    "shape": sm.SHAPES,
    "count": ("1", "2", "3", "4"),
    "tallest": ("A", "B", "C"),
    "value": tuple(str(v) for v in range(1, 10)),
    "word": WORDS,
    "direction": DIRECTIONS,
}
TRUTH_STATEMENT = {
    "color": "The {shape} in this {media} is {answer}.",
    "static_color": "The {shape} in this video is {answer}.",
    "shape": "The {media} shows a {answer}.",
    "count": "There are {answer} shapes in the {media}.",
    "tallest": "Bar {answer} is the tallest bar in the chart.",
    "value": "Bar {bar} has the value {answer}.",
    "word": 'The image shows the word "{answer}".',
    "direction": "The {color} {shape} moves {answer}.",
}


def _rng(seed: int, i: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, i, salt])


def defect_of(seed: int, i: int, rates: dict[str, float]) -> str:
    """The defect injected at line i (or "none"); duplicates need an earlier line."""
    u = _rng(seed, i, 1).random()
    edge = 0.0
    for name, rate in rates.items():
        edge += rate
        if u < edge:
            return "none" if name in ("exact_dup", "near_dup") and i < 10 else name
    return "none"


def original_of(seed: int, i: int, rates: dict[str, float]) -> int:
    """A clean earlier line that line i duplicates."""
    rng = _rng(seed, i, 2)
    while True:
        j = int(rng.integers(0, i))
        if defect_of(seed, j, rates) == "none":
            return j


def _spec(seed: int, i: int) -> dict:
    """The clean content of line i: category, question type, style and media parameters."""
    rng = _rng(seed, i, 3)
    names = list(CATEGORY_WEIGHTS)
    category = names[rng.choice(len(names), p=np.array(list(CATEGORY_WEIGHTS.values())))]
    color = str(rng.choice(list(sm.COLORS)))
    shape = str(rng.choice(sm.SHAPES))
    obj = {
        "shape": shape,
        "color": color,
        "x": int(rng.integers(24, 41)),
        "y": int(rng.integers(24, 41)),
        "r": int(rng.integers(14, 21)),
    }
    # Per-sample variation, so distinct rows rarely share a picture pixel for pixel.
    background = int(rng.integers(205, 256))
    spec = {
        "category": category,
        "color": color,
        "shape": shape,
        "obj": obj,
        "background": background,
    }
    if category == "general":
        qtype = str(rng.choice(["color", "shape", "count"], p=[0.4, 0.35, 0.25]))
        spec["objects"] = [obj]
        if qtype == "count":
            count = int(rng.integers(1, 5))
            cells = rng.permutation(4)[:count]
            spec["objects"] = [
                {
                    "shape": str(rng.choice(sm.SHAPES)),
                    "color": str(rng.choice(list(sm.COLORS))),
                    "x": 16 + 32 * (c % 2) + int(rng.integers(-4, 5)),
                    "y": 16 + 32 * (c // 2) + int(rng.integers(-4, 5)),
                    "r": int(rng.integers(10, 13)),
                }
                for c in cells
            ]
            spec["answer"] = str(count)
        else:
            spec["answer"] = color if qtype == "color" else shape
    elif category == "chart":
        qtype = str(rng.choice(["tallest", "value"]))
        values = [int(v) for v in rng.choice(np.arange(1, 10), size=3, replace=False)]
        spec["values"], spec["bar"] = values, "ABC"[int(rng.integers(0, 3))]
        spec["answer"] = (
            "ABC"[int(np.argmax(values))]
            if qtype == "tallest"
            else str(values["ABC".index(spec["bar"])])
        )
    elif category == "ocr":
        qtype, spec["word"] = "word", str(rng.choice(WORDS))
        spec["font_scale"] = float(rng.uniform(0.24, 0.36))
        spec["dy"] = float(rng.uniform(-12, 12))
        spec["answer"] = spec["word"]
    else:
        qtype = "direction" if category == "temporal" else "static_color"
        spec["direction"] = str(rng.choice(DIRECTIONS))
        spec["num_frames"] = int(rng.integers(8, 17))
        dx, dy = sm.STEP[spec["direction"]]
        n = spec["num_frames"] - 1
        obj["r"] = int(rng.integers(14, 19))
        obj["x"] = int(np.clip(32 - dx * n / 2, 12, 52))
        obj["y"] = int(np.clip(32 - dy * n / 2, 12, 52))
        # jitter across the motion, so videos of one direction differ
        obj["x" if dx == 0 else "y"] += int(rng.integers(-10, 11))
        spec["answer"] = spec["direction"] if qtype == "direction" else color
    spec["qtype"] = qtype
    style_draw = rng.random()
    if qtype in ("color", "shape", "static_color", "direction") and style_draw < 0.15:
        spec["style"] = "multi-choice"
    elif qtype in ("color", "shape", "word") and style_draw < 0.3:
        spec["style"] = "yes/no"
    else:
        spec["style"] = "number" if qtype in ("count", "value") else "word/short phrase"
    spec["template"] = int(rng.integers(0, 3))
    spec["context"] = (
        f"This {rng.choice(CONTEXT_ADJ)} {rng.choice(CONTEXT_NOUNS)} about "
        f"{rng.choice(CONTEXT_TOPICS)} and {rng.choice(CONTEXT_TOPICS)} "
        f"was prepared for {rng.choice(CONTEXT_TOPICS)} lessons."
    )
    if spec["style"] == "multi-choice":
        options = [
            spec["answer"],
            *[a for a in rng.permutation(ANSWER_SETS[qtype]) if a != spec["answer"]][:3],
        ]
        spec["options"] = [str(o) for o in rng.permutation(options)]
    elif spec["style"] == "yes/no":
        spec["asked"] = str(
            spec["answer"]
            if rng.random() < 0.5
            else rng.choice([a for a in ANSWER_SETS[qtype] if a != spec["answer"]])
        )
    return spec


def _fill(template: str, spec: dict, answer: str) -> str:
    media = "video" if spec["category"] in ("temporal", "static_video") else "image"
    return template.format(
        shape=spec["shape"],
        color=spec["color"],
        media=media,
        bar=spec.get("bar", "A"),
        answer=answer,
    )


def question_and_answer(spec: dict, answer: str, template: int | None = None) -> tuple[str, str]:
    """The question text (context, ask, format hint) and the answer for a spec."""
    qtype, style = spec["qtype"], spec["style"]
    ask = _fill(ASK[qtype][spec["template"] if template is None else template], spec, answer)
    if style == "multi-choice":
        letters = "ABCD"
        options = " ".join(f"{letters[k]}. {o}" for k, o in enumerate(spec["options"]))
        ask = f"{ask} Options: {options}."
        answer = letters[spec["options"].index(answer)] if answer in spec["options"] else "A"
    elif style == "yes/no":
        ask = f"Is the answer to this question {spec['asked']}? {ask}"
        answer = "yes" if answer == spec["asked"] else "no"
    return f"{spec['context']} {ask} {HINT[style]}", answer


def edit_words(text: str, rng: np.random.Generator) -> str:
    """Edit 5-20% of the words of `text` (replace, drop or insert filler words)."""
    words = text.split()
    n_edits = max(1, int(round(len(words) * rng.uniform(0.05, 0.2))))
    fillers = ("please", "kindly", "now", "here", "also", "just", "really")
    for _ in range(n_edits):
        k = int(rng.integers(0, len(words)))
        op = rng.random()
        if op < 0.4:
            words[k] = str(rng.choice(fillers))
        elif op < 0.7 and len(words) > 5:
            del words[k]
        else:
            words.insert(k, str(rng.choice(fillers)))
    return " ".join(words)


COPY_SIZE = 80  # side of a media copy (the original is sm.SIZE)


def render(spec: dict, size: int = sm.SIZE) -> np.ndarray:
    """The spec's media: (H, W, 3) for images, (T, H, W, 3) for videos."""
    category = spec["category"]
    if category == "general":
        return sm.render_shapes(spec["objects"], size, spec["background"])
    if category == "chart":
        return sm.render_chart(spec["values"], size)
    if category == "ocr":
        return sm.render_word(spec["word"], size, spec["font_scale"], spec["dy"])
    return sm.render_video_frames(
        spec["obj"], spec["direction"], spec["num_frames"], size, spec["background"]
    )


def _write_media(spec: dict, root: str, rel: str, copy: bool = False) -> None:
    """The spec's media file; a copy is the same pixels resized to 80 px and re-encoded
    (JPEG quality 85; H.264 crf 28 instead of 18)."""
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = render(spec)
    if copy:
        pixels = sm.resize(pixels, COPY_SIZE)
    if spec["category"] in ("temporal", "static_video"):
        sm.save_video(pixels, path, crf=28 if copy else 18)
    else:
        sm.save_image(pixels, path, quality=85 if copy else None)


def _media_rel(spec: dict, i: int, kind: str = "") -> str:
    video = spec["category"] in ("temporal", "static_video")
    ext = ".mp4" if video else (".jpg" if kind == "copy" else ".png")
    return f"media/{spec['category']}/{i:07d}{kind and '_' + kind}{ext}"


def _record(spec: dict, i: int, question: str, answer: str, media: str) -> dict:
    key = "video" if spec["category"] in ("temporal", "static_video") else "image"
    return {
        "id": f"syn-{i:07d}",
        key: media,
        "conversations": [
            {"from": "human", "value": f"<{key}>\n{question}"},
            {"from": "gpt", "value": answer},
        ],
        "source": "synthetic_" + ("temporal" if key == "video" else spec["category"]),
        "category": "video" if key == "video" else spec["category"],
    }


def generate_line(seed: int, i: int, root: str, rates: dict[str, float]) -> tuple[str, dict]:
    """Write line i's media under `root` and return (the JSONL line, its ground-truth row)."""
    defect = defect_of(seed, i, rates)
    rng = _rng(seed, i, 4)
    source_index = original_of(seed, i, rates) if defect in ("exact_dup", "near_dup") else i
    spec = _spec(seed, source_index)
    question, answer = question_and_answer(spec, spec["answer"])
    truth = {
        "line": i,
        "id": f"syn-{i:07d}",
        "category": spec["category"],
        "defect": defect,
        "dup_of": None,
        "dup_kind": None,
        "true_answer": answer,
        "qtype": spec["qtype"],
        "style": spec["style"],
    }
    media = _media_rel(spec, source_index)
    if defect in ("exact_dup", "near_dup"):
        truth["dup_of"] = f"syn-{source_index:07d}"
    if defect == "near_dup":
        kind = str(rng.choice(["reworded", "word_edit", "media_copy"]))
        truth["dup_kind"] = kind
        if kind == "reworded":
            question, _ = question_and_answer(spec, spec["answer"], (spec["template"] + 1) % 3)
        elif kind == "word_edit":
            question = edit_words(question, rng)
        else:
            media = _media_rel(spec, i, "copy")
            _write_media(spec, root, media, copy=True)
    elif defect not in ("exact_dup",):
        _write_media(spec, root, media)
    if defect == "wrong_answer":
        choices = {"yes/no": ("yes", "no"), "multi-choice": tuple("ABCD")}
        wrong_set = choices.get(spec["style"], ANSWER_SETS[spec["qtype"]])
        answer = str(rng.choice([a for a in wrong_set if a != answer]))
    elif defect == "text_answerable":
        statement = TRUTH_STATEMENT[spec["qtype"]]
        question = f"{_fill(statement, spec, spec['answer'])} {question}"
    elif defect == "corrupt_media":
        with open(os.path.join(root, media), "wb") as handle:
            handle.write(rng.bytes(int(rng.integers(0, 2)) * 300))
    elif defect == "missing_media":
        os.remove(os.path.join(root, media))
    elif defect == "path_escape":
        media = _escape_path(root, i, rng)
    record = _record(spec, i, question, answer, media)
    if defect == "malformed":
        truth["id"] = None
        return _malformed(record, rng), truth
    return json.dumps(record), truth


def _escape_path(root: str, i: int, rng: np.random.Generator) -> str:
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return "../../../etc/hostname"
    if kind == 1:
        return "/etc/hostname"
    link = os.path.join(root, "media", "links", f"{i:07d}.png")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if not os.path.lexists(link):
        os.symlink("/etc/hostname", link)
    return f"media/links/{i:07d}.png"


def _malformed(record: dict, rng: np.random.Generator) -> str:
    kind = int(rng.integers(0, 3))
    text = json.dumps(record)
    if kind == 0:
        return text[: len(text) // 2]  # truncated JSON
    if kind == 1:
        record.pop("conversations")
        return json.dumps(record)
    record["conversations"] = "not a list"
    return json.dumps(record)

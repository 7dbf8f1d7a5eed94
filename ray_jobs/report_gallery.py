"""The report's pictures of the data: galleries of real rows with thumbnails and their text.

A curator's first question is "show me what you removed and what you kept", so the report
shows rows, not only histograms: sample duplicate clusters side by side (kept and removed),
the rows each descriptor ranks highest and lowest, OST's most harmful rows (lowest one-step
utility, the rows `selection/baselines.py` flags), and quarantined rows whose media still
decode (rejected for their text, not their media). Each card holds a small JPEG thumbnail
inlined as base64 (for a video, three frames side by side), the question and the answer.
Media paths resolve against the run's media root and never leave it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators import storage
from operators.media import load_image, read_video_frames
from operators.media_paths import resolve_media_path

__all__ = [
    "CARD_COLUMNS",
    "CSS",
    "card",
    "duplicate_gallery",
    "extremes_gallery",
    "quarantine_gallery",
    "thumbnail",
]

CARD_COLUMNS = ["id", "media_type", "media", "messages", "category"]
THUMB_PX = 96  # the longer side of a thumbnail frame
CSS = (
    ".gallery{display:flex;flex-wrap:wrap;gap:8px;margin:.5em 0 1.2em}"
    ".card{width:220px;border:1px solid #ddd;border-radius:4px;padding:6px;font-size:12px;"
    "overflow-wrap:anywhere;background:#fafafa}"
    ".card img{display:block;max-width:100%;height:auto;margin-bottom:4px}"
    ".card .tag{font-weight:bold}.card .q{color:#333}.card .a{color:#064}"
    ".cluster{display:flex;flex-wrap:wrap;gap:6px;border-left:3px solid #4c72b0;"
    "padding-left:6px;margin-bottom:10px}"
)


def thumbnail(media_type: str, paths: list[str]) -> str | None:
    """A base64 JPEG of the row's first media (video: 3 uniform frames); None if it fails."""
    from PIL import Image

    if not paths or media_type not in ("image", "video"):
        return None
    try:
        if media_type == "image":
            frames = [load_image(paths[0])]
        else:
            frames = list(read_video_frames(paths[0], 3)[0])
    except Exception:  # noqa: BLE001 - media that does not decode gets no picture
        return None
    images = []
    for frame in frames:
        image = Image.fromarray(np.asarray(frame, np.uint8))
        image.thumbnail((THUMB_PX, THUMB_PX))
        images.append(image)
    strip = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)))
    x = 0
    for image in images:
        strip.paste(image, (x, 0))
        x += image.width
    buffer = io.BytesIO()
    strip.save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode()


def _turns(messages) -> tuple[str, str]:
    question = next((m["content"] for m in messages or [] if m["role"] == "user"), "")
    answer = next((m["content"] for m in messages or [] if m["role"] == "assistant"), "")
    for tag in ("<image>", "<video>"):
        question = question.replace(tag, "")
    return question.strip(), answer.strip()


def _short(text: str, limit: int = 180) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def card(row: dict, tag: str = "", picture: str | None = None) -> str:
    """One row as an HTML card: thumbnail, tag (why it is shown), id, question, answer."""
    picture = picture or thumbnail(row.get("media_type", ""), row.get("media") or [])
    image = f'<img alt="{html.escape(row["id"])}" src="data:image/jpeg;base64,{picture}">'
    question, answer = _turns(row.get("messages"))
    return (
        '<div class="card">'
        + (image if picture else "<div>(no picture)</div>")
        + (f'<div class="tag">{html.escape(tag)}</div>' if tag else "")
        + f"<div>{html.escape(row['id'])} · {html.escape(str(row.get('category') or ''))}</div>"
        + f'<div class="q">Q: {html.escape(_short(question))}</div>'
        + f'<div class="a">A: {html.escape(_short(answer, 80))}</div></div>'
    )


def _rows_by_id(rows: pa.Table, ids: list[str]) -> dict[str, dict]:
    chosen = rows.filter(pc.is_in(rows.column("id"), pa.array(ids, pa.string())))
    return {r["id"]: r for r in chosen.to_pylist()}


def duplicate_gallery(dedup: pa.Table, rows: pa.Table, clusters: int = 4, seed: int = 0) -> str:
    """Up to `clusters` duplicate clusters (2+ rows, a seeded sample), members side by side."""
    sizes = pc.value_counts(dedup.column("dup_cluster"))
    multi = [s["values"] for s in sizes.to_pylist() if s["counts"] > 1]
    if not multi:
        return "<p>No duplicate cluster.</p>"
    rng = np.random.default_rng(seed)
    picked = [multi[i] for i in sorted(rng.choice(len(multi), min(clusters, len(multi)), False))]
    members = dedup.filter(pc.is_in(dedup.column("dup_cluster"), pa.array(picked))).to_pylist()
    by_id = _rows_by_id(rows, [m["id"] for m in members])
    parts = []
    for cluster in picked:
        cards = []
        for member in sorted((m for m in members if m["dup_cluster"] == cluster), key=_kept):
            verdict = "kept" if member["dup_keep"] else f"removed ({member.get('dup_reason')})"
            if member["id"] in by_id:
                cards.append(card(by_id[member["id"]], verdict))
        parts.append(f'<div class="cluster">{"".join(cards[:6])}</div>')
    return "".join(parts)


def _kept(member: dict) -> tuple:
    return (not member["dup_keep"], member["id"])


def extremes_gallery(scored: pa.Table, column: str, count: int = 3, lowest_only=False) -> str:
    """The `count` rows with the highest and the lowest `column` (non-null), as cards."""
    values = scored.column(column).cast(pa.float64())
    finite = scored.filter(pc.and_(pc.is_valid(values), pc.is_finite(values)))
    if finite.num_rows == 0:
        return ""
    order = finite.sort_by([(column, "ascending"), ("id", "ascending")])
    low = order.slice(0, count).to_pylist()
    high = [] if lowest_only else order.slice(max(finite.num_rows - count, 0)).to_pylist()[::-1]
    cards = [card(r, f"highest {column} = {r[column]:.4g}") for r in high]
    cards += [card(r, f"lowest {column} = {r[column]:.4g}") for r in low]
    return f'<div class="gallery">{"".join(cards)}</div>'


def _media_root(run: str) -> str | None:
    """The run's media root, from its resolved recipe (RUN/config.yaml)."""
    import yaml

    path = storage.join(run, "config.yaml")
    if not storage.exists(path):
        return None
    config = yaml.safe_load(storage.read_text(path)) or {}
    root = config.get("media_root") or os.path.dirname(str(config.get("input", "")).rstrip("/"))
    return root or None


def _llava_messages(turns) -> list[dict]:
    """LLaVA `conversations` as messages, as far as they are well formed (for display)."""
    if not isinstance(turns, list):
        return []
    roles = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant"}
    return [
        {"role": roles[t["from"]], "content": str(t.get("value", ""))}
        for t in turns
        if isinstance(t, dict) and t.get("from") in roles
    ]


def quarantine_gallery(run: str, quarantined: pa.Table, limit: int = 8) -> str:
    """Quarantined rows (LLaVA-style raw input) whose media still decode: cut for their text."""
    root = _media_root(run)
    if root is None:
        return ""
    cards = []
    for row in quarantined.to_pylist():
        try:
            raw = json.loads(row.get("raw") or "")
        except (ValueError, TypeError):
            continue
        if not isinstance(raw, dict):
            continue
        kind = "video" if isinstance(raw.get("video"), str) else "image"
        media = raw.get(kind)
        if not isinstance(media, str):
            continue
        try:
            path = resolve_media_path(media, root)
        except ValueError:  # outside the media root: never opened
            continue
        picture = thumbnail(kind, [path])
        if picture is None:
            continue
        item = {"id": str(row.get("id")), "messages": _llava_messages(raw.get("conversations"))}
        tag = f"{row['reason']}: {_short(row.get('error') or '', 90)}"
        cards.append(card(item, tag, picture))
        if len(cards) >= limit:
            break
    if not cards:
        return "<p>No quarantined row has media that decodes.</p>"
    return f'<div class="gallery">{"".join(cards)}</div>'

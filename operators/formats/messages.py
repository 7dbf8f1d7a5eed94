"""Normalize `messages`-style records: ms-swift / LLaMA-Factory and OpenAI / TRL content parts.

ms-swift and LLaMA-Factory (sharegpt layout with `messages` tags) write
`{"messages": [{"role": "user", "content": "<image>What is it?"}, ...], "images": [...]}`
(`videos` likewise). The OpenAI / TRL form gives a turn's content as parts:
`[{"type": "image"}, {"type": "text", "text": "What is it?"}]`, the media in the record's
`images` list (TRL) or inline in the part (`image`, `path`, `url`, `image_url.url`; `video`).
Both map to the sample row: a part list becomes one string with a `<image>` / `<video>` tag
where each media part stood, text parts concatenated, so the placeholder rule and every later
stage see one form. `extra._mmcurate.content` records "parts" (and "inline" media) so an
export writes the record back in the form it came in.
"""

from __future__ import annotations

from operators.formats.records import ROLE_OF, Parsed, RowError, build_row, media_field

__all__ = ["normalize_messages", "parts_to_text"]

MEDIA_PARTS = {"image": "image", "image_url": "image", "video": "video", "video_url": "video"}


def _inline_path(part: dict):
    for key in ("image", "video", "path", "url"):
        if isinstance(part.get(key), (str, dict, bytes)):
            return part[key]
    nested = part.get(part["type"])
    return nested.get("url") if isinstance(nested, dict) else None


def parts_to_text(parts, turn: int) -> tuple[str, list[tuple[str, object]]]:
    """A content-part list as tagged text, and the (media type, inline media or None) of each
    media part in order."""
    text, media = [], []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif kind in MEDIA_PARTS:
            media_type = MEDIA_PARTS[kind]
            text.append(f"<{media_type}>")
            media.append((media_type, _inline_path(part)))
        else:
            raise RowError("malformed", f"turn {turn} has an unknown content part", "content")
    return "".join(text), media


def _turns(raw) -> tuple[list[dict], list[tuple[str, object]], bool]:
    if not isinstance(raw, list) or not raw:
        raise RowError("malformed", "must be a non-empty list of turns", "messages")
    messages, inline, parts = [], [], False
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or turn.get("role") not in ROLE_OF:
            raise RowError("malformed", f"turn {i} has no known role", "role")
        content = turn.get("content")
        if isinstance(content, list):
            content, media = parts_to_text(content, i)
            inline += media
            parts = True
        elif not isinstance(content, str):
            raise RowError("malformed", f"turn {i} content is not text or parts", "content")
        messages.append({"role": ROLE_OF[turn["role"]], "content": content})
    roles = {m["role"] for m in messages}
    if "user" not in roles or "assistant" not in roles:
        raise RowError("malformed", "needs at least one user and one assistant turn", "messages")
    return messages, inline, parts


def normalize_messages(record, origin: str, record_text: str, options) -> dict:
    """Map one ms-swift / LLaMA-Factory / content-parts record to a row dict (raises RowError)."""
    if not isinstance(record, dict):
        raise RowError("malformed", f"record is a {type(record).__name__}, not an object")
    messages, inline, parts = _turns(record.get("messages"))
    media_type, raw_media = media_field(record, ("images", "videos"))
    meta = {"content": "parts"} if parts else {}
    given = [m for _, m in inline if m is not None]
    if given and raw_media is not None:
        raise RowError("malformed", "media both inline in parts and in the record", "messages")
    if given:
        kinds = {kind for kind, _ in inline}
        if len(given) != len(inline) or len(kinds) > 1:
            raise RowError("malformed", "inline media parts must all be one type", "messages")
        media_type, raw_media, meta = kinds.pop(), given, {**meta, "inline": True}
    parsed = Parsed(messages, media_type, raw_media, ("messages", "images", "videos"), meta)
    return build_row(record, parsed, origin, record_text, options)

"""Rendering of the synthetic pool's media: shapes, bar charts, words, moving-object videos.

Every picture is a pure function of its parameters, so a duplicate re-renders its original
and resizes it (a resized / re-encoded copy) without reading files. Objects are large and motion is
clear (radius 14-20 px, 5 px per frame on 64x64) so a ~1M-parameter VLM can learn each task
(ARCHITECTURE.md section 6). Video objects carry a dark 1 px outline: the motion descriptors read
gray frames, where a yellow fill (gray ~196) all but vanishes on the light backgrounds (205-255).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "COLORS",
    "SHAPES",
    "resize",
    "render_chart",
    "render_shapes",
    "render_video_frames",
    "render_word",
    "save_image",
    "save_video",
]

SIZE = 64
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle")
OUTLINE = (30, 30, 30)  # the edge of video objects, dark in gray whatever the fill color


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, rgb, outline=None, width=1
):
    style = {"fill": rgb} if outline is None else {"fill": rgb, "outline": outline, "width": width}
    if shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], **style)
    elif shape == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], **style)
    else:
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], **style)


def render_shapes(
    objects: list[dict], size: int = SIZE, background: int = 245, outline=None
) -> np.ndarray:
    """Draw objects {shape, color, x, y, r} (coordinates for a 64 px canvas) at `size` px on
    a gray background of level `background`; `outline` (RGB) draws a 1 px edge (at 64 px)."""
    scale = size / SIZE
    image = Image.new("RGB", (size, size), (background,) * 3)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        _draw_shape(
            draw,
            obj["shape"],
            obj["x"] * scale,
            obj["y"] * scale,
            obj["r"] * scale,
            COLORS[obj["color"]],
            outline,
            max(1, round(scale)),
        )
    return np.asarray(image)


def render_chart(values: list[int], size: int = SIZE) -> np.ndarray:
    """A bar chart: bar k (labelled A, B, C, ...) has height proportional to values[k] (1-9)."""
    scale = size / SIZE
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(8, int(10 * scale)))
    width = (SIZE - 8) / len(values)
    for k, value in enumerate(values):
        left = 4 + k * width + 2
        top = 52 - value * 5
        draw.rectangle(
            [left * scale, top * scale, (left + width - 4) * scale, 52 * scale], fill=(40, 90, 200)
        )
        draw.text(
            ((left + width / 2 - 5) * scale, 53 * scale), "ABCDE"[k], fill=(0, 0, 0), font=font
        )
    return np.asarray(image)


def render_word(word: str, size: int = SIZE, scale: float = 0.3, dy: float = 0.0) -> np.ndarray:
    """A word in large black letters (height `scale` of the image), centred on white and
    shifted down by `dy` (in 64 px units)."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(size * scale))
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    x = (size - (right - left)) / 2 - left
    y = (size - (bottom - top)) / 2 - top + dy * size / SIZE
    draw.text((x, y), word, fill=(0, 0, 0), font=font)
    return np.asarray(image)


STEP = {"left": (-5, 0), "right": (5, 0), "up": (0, -5), "down": (0, 5), "still": (0, 0)}


def render_video_frames(
    obj: dict, direction: str, num_frames: int, size: int = SIZE, background: int = 245
):
    """Frames (T, H, W, 3) of one object, outlined in OUTLINE, moving 5 px per frame in
    `direction`."""
    dx, dy = STEP[direction]
    frames = []
    for t in range(num_frames):
        moved = {**obj, "x": obj["x"] + dx * t, "y": obj["y"] + dy * t}
        frames.append(render_shapes([moved], size, background, OUTLINE))
    return np.stack(frames)


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """An image (H, W, 3) or frames (T, H, W, 3) resized to size x size (bilinear)."""
    if pixels.ndim == 4:
        return np.stack([resize(frame, size) for frame in pixels])
    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))


def save_image(array: np.ndarray, path: str, quality: int | None = None) -> None:
    """PNG by default; JPEG when `quality` is given (a re-encoded copy)."""
    image = Image.fromarray(array)
    if quality is None:
        image.save(path, format="PNG")
    else:
        image.save(path, format="JPEG", quality=quality)


def save_video(frames: np.ndarray, path: str, fps: int = 8, crf: int = 18) -> None:
    """Encode frames (T, H, W, 3) as H.264 MP4 with PyAV."""
    import av

    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

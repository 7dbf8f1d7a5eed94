"""Media decoding: image loading, video probing, and uniform frame sampling with PyAV.

Every failure raises MediaError with a short reason (missing, empty, undecodable, no video
stream, ...) so callers can quarantine the row instead of crashing the job. Local files are
decoded from their path; media under an object-store URI (`s3://...`) are read whole through
`operators/storage.py` and decoded from memory (PIL and PyAV both take a file object).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from operators import storage

__all__ = [
    "MediaError",
    "MediaFacts",
    "load_image",
    "probe_media",
    "read_video_frames",
    "uniform_indices",
]

# Refuse media larger than this many bytes before decoding (a "huge" file is bad input).
MAX_MEDIA_BYTES = 512 * 1024 * 1024
# Refuse images with more pixels than this (PIL's own default warning threshold, ~89.5 MP):
# checked from the header, so a small file declaring a huge canvas is never decoded.
MAX_IMAGE_PIXELS = 89_478_485


class MediaError(ValueError):
    """A media file that is missing, empty, too large, or cannot be decoded."""


@dataclass(frozen=True)
class MediaFacts:
    width: int
    height: int
    num_frames: int
    fps: float
    duration: float


def _check_file(path: str) -> None:
    try:
        size = storage.size(path)
    except (FileNotFoundError, NotADirectoryError):
        raise MediaError(f"media file not found: {path}") from None
    except OSError as error:
        raise MediaError(f"media file cannot be read ({error}): {path}") from None
    if size == 0:
        raise MediaError(f"media file is empty: {path}")
    if size > MAX_MEDIA_BYTES:
        raise MediaError(f"media file is {size} bytes, over the {MAX_MEDIA_BYTES} limit: {path}")


def _source(path: str):
    """What a decoder opens: the local path, or the remote file's bytes as a file object."""
    _check_file(path)
    if not storage.is_remote(path):
        return storage.local_path(path)
    try:
        return io.BytesIO(storage.read_bytes(path))
    except OSError as error:
        raise MediaError(f"media file cannot be read ({error}): {path}") from None


def _check_pixels(size: tuple[int, int], path: str) -> None:
    """Refuse an image whose header claims more pixels than MAX_IMAGE_PIXELS (a small file
    can declare a huge canvas: a decompression bomb), before anything is decoded."""
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError(
            f"image is {width}x{height} = {width * height} pixels, over the "
            f"{MAX_IMAGE_PIXELS} limit (decompression bomb): {path}"
        )


def load_image(path: str) -> np.ndarray:
    """Decode an image file to an RGB uint8 array of shape (H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    source = _source(path)
    try:
        with Image.open(source) as image:
            _check_pixels(image.size, path)
            return np.asarray(image.convert("RGB"))
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as error:
        raise MediaError(
            f"image cannot be decoded ({type(error).__name__}: {error}): {path}"
        ) from None


def _count_frames(container, stream) -> int:
    if stream.frames:
        return int(stream.frames)
    count = sum(1 for _ in container.decode(stream))
    container.seek(0)
    return count


def probe_media(path: str, media_type: str) -> MediaFacts:
    """Open a media file far enough to know it decodes; return its size, frames and timing."""
    if media_type == "image":
        array = load_image(path)
        return MediaFacts(array.shape[1], array.shape[0], 1, 0.0, 0.0)
    return _probe_video(_source(path), path)


def _probe_video(source, path: str) -> MediaFacts:
    import av

    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream: {path}")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise MediaError(f"video has no decodable frame: {path}")
            container.seek(0)
            frames = _count_frames(container, stream)
            fps = float(stream.average_rate or 0.0)
            duration = frames / fps if fps else 0.0
            return MediaFacts(first.width, first.height, frames, fps, duration)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, StopIteration) as error:
        raise MediaError(
            f"video cannot be decoded ({type(error).__name__}: {error}): {path}"
        ) from None


def uniform_indices(num_frames: int, count: int) -> list[int]:
    """`count` frame indices spread uniformly over `num_frames` (all of them if fewer)."""
    if num_frames <= count:
        return list(range(num_frames))
    return [int(round(x)) for x in np.linspace(0, num_frames - 1, count)]


def read_video_frames(path: str, count: int) -> tuple[np.ndarray, MediaFacts]:
    """Decode `count` uniformly sampled RGB frames, shape (T, H, W, 3), and the video's facts.

    One open and one decoding pass when the container states its frame count (MP4 does);
    otherwise the frames are counted first. Decoding stops after the last wanted frame, so
    only the needed prefix is read.
    """
    import av

    source = _source(path)  # remote bytes are fetched once for probing and decoding
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream: {path}")
            stream = container.streams.video[0]
            total = int(stream.frames or 0)
            if total:
                frames = _decode_wanted(container, stream, uniform_indices(total, count))
                fps = float(stream.average_rate or 0.0)
                height, width = frames[0].shape[:2] if frames else (0, 0)
                facts = MediaFacts(width, height, total, fps, total / fps if fps else 0.0)
        if not total:  # no frame count in the container: count by decoding, then decode
            facts = _probe_video(source, path)
            if isinstance(source, io.BytesIO):
                source.seek(0)
            with av.open(source) as container:
                stream = container.streams.video[0]
                frames = _decode_wanted(container, stream, uniform_indices(facts.num_frames, count))
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as error:
        raise MediaError(
            f"video cannot be decoded ({type(error).__name__}: {error}): {path}"
        ) from None
    if not frames:
        raise MediaError(f"video has no decodable frame: {path}")
    return np.stack(frames), facts


def _decode_wanted(container, stream, wanted: list[int]) -> list[np.ndarray]:
    """RGB arrays of the frames at the sorted indices `wanted` (an index may repeat)."""
    frames: list[np.ndarray] = []
    next_wanted = 0
    for index, frame in enumerate(container.decode(stream)):
        while next_wanted < len(wanted) and wanted[next_wanted] == index:
            frames.append(frame.to_ndarray(format="rgb24"))
            next_wanted += 1
        if next_wanted == len(wanted):
            break
    return frames

"""Resolve media paths against a pool's media root, refusing anything that escapes it.

A path escapes when, after joining with the root and resolving `..` and symlinks, it is not
inside the resolved root. Such a path is never opened: the row goes to quarantine. Remote
URIs (`s3://`, `gs://`, ...) are accepted only under a remote root with the same prefix.
"""

from __future__ import annotations

import os
import posixpath

__all__ = ["MediaPathError", "resolve_media_path", "relative_media_path"]


class MediaPathError(ValueError):
    """A media path that is empty, malformed, or outside the media root."""


def _is_uri(path: str) -> bool:
    return "://" in path


def resolve_media_path(path: str, media_root: str) -> str:
    """Return the absolute location of `path` under `media_root`, or raise MediaPathError."""
    if not isinstance(path, str) or not path.strip():
        raise MediaPathError(f"media path is empty or not a string: {path!r}")
    if "\x00" in path:
        raise MediaPathError("media path contains a NUL byte")
    if _is_uri(media_root) or _is_uri(path):
        return _resolve_uri(path, media_root)
    root = os.path.realpath(media_root)
    joined = path if os.path.isabs(path) else os.path.join(root, path)
    resolved = os.path.realpath(joined)
    if resolved != root and not resolved.startswith(root + os.sep):
        raise MediaPathError(f"media path {path!r} escapes the media root {media_root!r}")
    return resolved


def _resolve_uri(path: str, media_root: str) -> str:
    root = media_root.rstrip("/")
    if _is_uri(path):
        scheme, _, rest = path.partition("://")
        full = f"{scheme}://{posixpath.normpath(rest)}"
    elif _is_uri(root):
        scheme, _, rest = root.partition("://")
        full = f"{scheme}://{posixpath.normpath(posixpath.join(rest, path))}"
    else:
        raise MediaPathError(f"remote media path {path!r} under a local media root")
    if not full.startswith(root + "/"):
        raise MediaPathError(f"media path {path!r} escapes the media root {media_root!r}")
    return full


def relative_media_path(resolved: str, media_root: str) -> str:
    """Inverse of resolve_media_path for export: the path as written relative to the root."""
    if _is_uri(resolved):
        return resolved[len(media_root.rstrip("/")) + 1 :]
    return os.path.relpath(resolved, os.path.realpath(media_root))

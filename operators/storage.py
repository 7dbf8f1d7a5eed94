"""One storage layer for every job: local paths and object-store URIs through `pyarrow.fs`.

A location is a string: a plain local path (`/data/run`, `runs/x`), `file:///...`, or a URI
that `pyarrow.fs.FileSystem.from_uri` understands (`s3://bucket/key`, `gs://bucket/key`,
`hdfs://host/path`, ...). Plain paths keep the fast local code (os, open, rename); URIs go
through the pyarrow filesystem of their scheme and bucket, created once per process.

Atomic writes: locally a file is written under a temporary name and renamed. An object store
has no rename, but an object only becomes visible when its upload completes, so it is written
whole under its final name. Directories on an object store are key prefixes; a stage's
completion is its `_SUCCESS` object, written last, exactly as on a local disk, so resume
semantics are the same.

Credentials and endpoints come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, GOOGLE_APPLICATION_CREDENTIALS, ...) of every process that
opens a location, Ray workers included (see docs/storage.md).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import shutil
import tempfile

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = [
    "commit_dir",
    "copy_dir",
    "download_dir",
    "exists",
    "filesystem",
    "is_remote",
    "isdir",
    "join",
    "listdir",
    "local_copy",
    "local_path",
    "makedirs",
    "open_input",
    "open_output",
    "output_dir",
    "parquet_file",
    "read_bytes",
    "read_parquet",
    "read_schema",
    "read_text",
    "remove",
    "size",
    "staging_dir",
    "upload_dir",
    "write_bytes",
    "write_parquet",
    "write_text",
]


def is_remote(path: str) -> bool:
    """True for a URI handled by a pyarrow filesystem (`file://` counts as local)."""
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    """A local location as a plain path (`file:///x` -> `/x`)."""
    return path[len("file://") :] if path.startswith("file://") else path


def join(base: str, *parts: str) -> str:
    """Join path parts: `/` for URIs, os.path.join for local paths."""
    if is_remote(base):
        return posixpath.join(base.rstrip("/") or base, *parts)
    return os.path.join(local_path(base), *parts)


@functools.lru_cache(maxsize=16)
def _filesystem_of(prefix: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of `scheme://authority` and the path of the authority's root in it."""
    fs, root = pafs.FileSystem.from_uri(prefix)
    return fs, root.rstrip("/")


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for any location."""
    if not is_remote(path):
        return pafs.LocalFileSystem(), os.path.abspath(local_path(path))
    scheme, _, rest = path.partition("://")
    authority, _, key = rest.partition("/")
    fs, root = _filesystem_of(f"{scheme}://{authority}")
    key = key.strip("/")
    if root:
        return fs, f"{root}/{key}" if key else root
    return fs, f"/{key}"


def _info(path: str) -> pafs.FileInfo:
    fs, inner = filesystem(path)
    return fs.get_file_info(inner)


def exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(local_path(path))
    return _info(path).type != pafs.FileType.NotFound


def isdir(path: str) -> bool:
    if not is_remote(path):
        return os.path.isdir(local_path(path))
    return _info(path).type == pafs.FileType.Directory


def size(path: str) -> int:
    """Size in bytes; raises FileNotFoundError when missing."""
    if not is_remote(path):
        return os.path.getsize(local_path(path))
    info = _info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(path)
    return int(info.size)


def listdir(path: str) -> list[str]:
    """Sorted names of a directory's direct children ([] when it does not exist)."""
    if not is_remote(path):
        local = local_path(path)
        return sorted(os.listdir(local)) if os.path.isdir(local) else []
    fs, inner = filesystem(path)
    selector = pafs.FileSelector(inner, allow_not_found=True, recursive=False)
    return sorted(info.base_name for info in fs.get_file_info(selector))


def makedirs(path: str) -> None:
    """Create a local directory (object stores need none: keys imply their prefixes)."""
    if not is_remote(path):
        os.makedirs(local_path(path), exist_ok=True)


def open_input(path: str):
    """A seekable binary file object (pyarrow's random-access file for URIs: ranged reads)."""
    if not is_remote(path):
        return open(local_path(path), "rb")
    fs, inner = filesystem(path)
    return fs.open_input_file(inner)


def read_bytes(path: str, start: int = 0, end: int | None = None) -> bytes:
    """Bytes [start, end) of a file (the whole file by default); one ranged read on a store."""
    with open_input(path) as handle:
        if start:
            handle.seek(start)
        return handle.read() if end is None else handle.read(end - start)


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


@contextlib.contextmanager
def open_output(path: str):
    """A binary stream whose content appears at `path` only if the block completes: a local
    temporary file, then renamed (local) or uploaded whole (object store)."""
    remote = is_remote(path)
    if remote:
        handle_fd, tmp = tempfile.mkstemp(prefix="mmcurate-upload-")
        os.close(handle_fd)
    else:
        path = local_path(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            yield handle
        if remote:
            fs, inner = filesystem(path)
            pafs.copy_files(
                tmp, inner, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
            )
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def output_dir(path: str):
    """A local directory whose files appear at `path` only if the block completes, replacing
    what was there: `path.tmp` renamed over `path` locally; on an object store a local
    temporary directory, uploaded after the old objects are removed (a reader relies on the
    stage's `_SUCCESS`, written later, as for any directory there)."""
    if is_remote(path):
        with tempfile.TemporaryDirectory(prefix="mmcurate-out-") as tmp:
            yield tmp
            remove(path)
            upload_dir(tmp, path)
        return
    path = local_path(path).rstrip("/")
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    yield tmp
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def copy_dir(source: str, target: str) -> None:
    """Copy a directory tree to `target` (any locations), replacing what was there."""
    remove(target)
    source_fs, source_inner = filesystem(source)
    target_fs, target_inner = filesystem(target)
    if not is_remote(target):
        os.makedirs(target_inner, exist_ok=True)
    pafs.copy_files(
        source_inner, target_inner, source_filesystem=source_fs, destination_filesystem=target_fs
    )


def write_bytes(path: str, data: bytes) -> None:
    """Write a file atomically: a temporary name + rename locally, one whole object remotely."""
    if not is_remote(path):
        with open_output(path) as handle:
            handle.write(data)
        return
    fs, inner = filesystem(path)
    with fs.open_output_stream(inner) as handle:
        handle.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _parquet_source(path: str):
    return (local_path(path), None) if not is_remote(path) else filesystem(path)[::-1]


def parquet_file(path: str) -> pq.ParquetFile:
    """A Parquet file opened for metadata and row-group reads."""
    fs_path, fs = _parquet_source(path)
    return pq.ParquetFile(fs_path, filesystem=fs)


def read_schema(path: str) -> pa.Schema:
    fs_path, fs = _parquet_source(path)
    return pq.read_schema(fs_path, filesystem=fs)


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file, or every Parquet file of a directory, as one table."""
    fs_path, fs = _parquet_source(path)
    return pq.read_table(fs_path, columns=columns, filesystem=fs)


def write_parquet(table: pa.Table, path: str) -> None:
    """Write a Parquet file atomically (see write_bytes)."""
    if not is_remote(path):
        path = local_path(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        return
    buffer = pa.BufferOutputStream()  # serialized first, so a failure leaves no object
    pq.write_table(table, buffer)
    write_bytes(path, buffer.getvalue().to_pybytes())


def remove(path: str) -> None:
    """Delete a file or a directory tree; a missing path is fine."""
    if not is_remote(path):
        path = local_path(path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
        return
    fs, inner = filesystem(path)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(inner)
    elif info.type == pafs.FileType.File:
        fs.delete_file(inner)


def staging_dir(out: str) -> str:
    """Where to build a directory that must appear whole: a temporary sibling locally, the
    directory itself (emptied) on an object store, where `_SUCCESS` marks it complete."""
    if is_remote(out):
        remove(out)
        return out
    out = local_path(out)
    tmp = os.path.join(os.path.dirname(out) or ".", f".{os.path.basename(out)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def commit_dir(tmp: str, out: str) -> None:
    """Publish a directory built in `staging_dir(out)` (a rename locally; nothing remotely)."""
    if tmp == out:
        return
    out = local_path(out)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def upload_dir(local: str, target: str) -> None:
    """Copy a local directory tree to `target` (any location), files whole."""
    fs, inner = filesystem(target)
    if not is_remote(target):
        os.makedirs(inner, exist_ok=True)
    pafs.copy_files(
        local, inner, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
    )


def local_copy(source: str) -> str:
    """A local directory with `source`'s files: `source` itself when local, else a copy cached
    under the temporary directory, keyed by the URI and its objects' names, sizes and times
    (so a rebuilt model is fetched again). Made once per node; concurrent callers race
    harmlessly: each downloads to its own folder and the first rename wins."""
    if not is_remote(source):
        return local_path(source)
    fs, inner = filesystem(source)
    listing = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    key = [source.rstrip("/")] + sorted(f"{i.path}:{i.size}:{i.mtime_ns}" for i in listing)
    digest = hashlib.sha1("\n".join(key).encode()).hexdigest()[:16]
    target = os.path.join(tempfile.gettempdir(), "mmcurate-cache", digest)
    if os.path.isdir(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = download_dir(source, tempfile.mkdtemp(prefix=f"{digest}-", dir=os.path.dirname(target)))
    try:
        os.replace(tmp, target)
    except OSError:  # another process placed it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def download_dir(source: str, cache: str | None = None) -> str:
    """A local copy of a directory: `source` itself when local, else a copy under `cache`
    (default: a fresh temporary directory). Returns the local path."""
    if not is_remote(source):
        return local_path(source)
    local = cache or tempfile.mkdtemp(prefix="mmcurate-")
    fs, inner = filesystem(source)
    pafs.copy_files(
        inner, local, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
    )
    return local

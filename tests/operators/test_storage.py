"""operators/storage.py on local paths: the same calls the jobs make on object-store URIs
(tests/ray_jobs/test_object_store.py runs them against an S3 server)."""

import os

import pyarrow as pa
import pytest

from operators import storage


def test_join_and_remote_detection():
    assert storage.join("s3://bucket/run", "pool", "part-00000.parquet") == (
        "s3://bucket/run/pool/part-00000.parquet"
    )
    assert storage.join("s3://bucket/run/", "pool") == "s3://bucket/run/pool"
    assert storage.join("/data/run", "pool") == "/data/run/pool"
    assert storage.join("file:///data/run", "pool") == "/data/run/pool"
    assert storage.is_remote("gs://b/k") and not storage.is_remote("file:///x")
    assert not storage.is_remote("relative/path")


def test_filesystem_paths_of_uris():
    fs, inner = storage.filesystem("file:///tmp/x/y")
    assert inner == "/tmp/x/y" and fs.type_name == "local"


def test_bytes_ranges_listing_and_remove(tmp_path):
    path = str(tmp_path / "a" / "b.bin")
    storage.write_bytes(path, b"0123456789")
    assert storage.read_bytes(path, 3, 7) == b"3456"
    assert storage.read_bytes(path) == b"0123456789"
    assert storage.size(path) == 10
    assert storage.listdir(str(tmp_path / "a")) == ["b.bin"]  # no temporary file left
    assert storage.listdir(str(tmp_path / "missing")) == []
    assert storage.isdir(str(tmp_path / "a")) and not storage.isdir(path)
    storage.remove(str(tmp_path / "a"))
    assert not storage.exists(path)
    storage.remove(str(tmp_path / "a"))  # a missing path is fine


def test_open_output_publishes_only_a_complete_file(tmp_path):
    path = str(tmp_path / "out.txt")
    with pytest.raises(RuntimeError), storage.open_output(path) as handle:
        handle.write(b"half")
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []
    with storage.open_output(path) as handle:
        handle.write(b"whole")
    assert storage.read_text(path) == "whole"


def test_parquet_round_trip_and_directory_reads(tmp_path):
    one = pa.table({"id": ["a", "b"], "x": [1, 2]})
    two = pa.table({"id": ["c"], "x": [3]})
    storage.write_parquet(one, str(tmp_path / "d" / "part-00000.parquet"))
    storage.write_parquet(two, str(tmp_path / "d" / "part-00001.parquet"))
    storage.write_text(str(tmp_path / "d" / "_SUCCESS"), "{}")
    assert storage.parquet_file(str(tmp_path / "d" / "part-00000.parquet")).metadata.num_rows == 2
    assert storage.read_schema(str(tmp_path / "d" / "part-00001.parquet")).names == ["id", "x"]
    whole = storage.read_parquet(str(tmp_path / "d"), columns=["id"])
    assert sorted(whole.column("id").to_pylist()) == ["a", "b", "c"]


def test_staging_dir_appears_whole(tmp_path):
    out = str(tmp_path / "clusters")
    storage.write_text(os.path.join(out, "old.txt"), "old")
    tmp = storage.staging_dir(out)
    assert tmp != out and os.path.dirname(tmp) == str(tmp_path)
    storage.write_text(os.path.join(tmp, "new.txt"), "new")
    assert storage.listdir(out) == ["old.txt"]  # untouched until the commit
    storage.commit_dir(tmp, out)
    assert storage.listdir(out) == ["new.txt"] and not os.path.exists(tmp)


def test_upload_and_download_dir_locally(tmp_path):
    source = tmp_path / "src"
    storage.write_text(str(source / "sub" / "f.txt"), "hello")
    storage.upload_dir(str(source), str(tmp_path / "dst"))
    assert storage.read_text(str(tmp_path / "dst" / "sub" / "f.txt")) == "hello"
    assert storage.download_dir(str(tmp_path / "dst")) == str(tmp_path / "dst")

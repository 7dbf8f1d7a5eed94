import os

import pytest

from operators.media_paths import MediaPathError, relative_media_path, resolve_media_path


def test_relative_path_resolves_inside_root(tmp_path):
    (tmp_path / "a").mkdir()
    resolved = resolve_media_path("a/x.png", str(tmp_path))
    assert resolved == os.path.join(os.path.realpath(tmp_path), "a", "x.png")
    assert relative_media_path(resolved, str(tmp_path)) == "a/x.png"


@pytest.mark.parametrize("path", ["../x.png", "a/../../x.png", "/etc/hostname", "", "a\x00b"])
def test_escaping_or_bad_paths_are_refused(tmp_path, path):
    with pytest.raises(MediaPathError):
        resolve_media_path(path, str(tmp_path))


def test_symlink_out_of_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", root / "link.png")
    with pytest.raises(MediaPathError, match="escapes"):
        resolve_media_path("link.png", str(root))


def test_absolute_path_inside_root_is_accepted(tmp_path):
    target = tmp_path / "in.png"
    assert resolve_media_path(str(target), str(tmp_path)) == os.path.realpath(target)


def test_uri_paths_must_stay_under_a_remote_root():
    assert resolve_media_path("a/b.png", "s3://bucket/pool") == "s3://bucket/pool/a/b.png"
    with pytest.raises(MediaPathError):
        resolve_media_path("../other/b.png", "s3://bucket/pool")
    with pytest.raises(MediaPathError):
        resolve_media_path("s3://bucket/x.png", "/local/root")

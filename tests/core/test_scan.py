"""Library scanning must find every photo once, skip junk, and survive loops and bad folders."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from imgfinder.core import scan
from imgfinder.core.scan import iter_image_files, root_available
from tests.imgutil import make_jpeg, make_png, permissions_enforced

needs_symlinks = pytest.mark.skipif(
    sys.platform == "win32", reason="symlinks need privileges on Windows"
)


def rel(paths, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


@pytest.fixture
def library(tmp_path) -> Path:
    root = tmp_path / "photos"
    make_jpeg(root / "b.jpg")
    make_png(root / "A.png")
    make_jpeg(root / "2023" / "summer" / "beach.JPG")
    make_jpeg(root / "2023" / "c.jpeg")
    make_png(root / "2023" / "summer" / "deep" / "er" / "x.webp.png")
    (root / "2023" / "notes.txt").write_text("not a photo")
    (root / "2023" / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return root


def test_nested_dirs_sorted_absolute(library):
    found = list(iter_image_files([library]))
    assert all(p.is_absolute() for p in found)
    assert rel(found, library) == [
        "2023/c.jpeg",
        "2023/summer/beach.JPG",
        "2023/summer/deep/er/x.webp.png",
        "A.png",
        "b.jpg",
    ]
    assert list(iter_image_files([library])) == found  # deterministic


def test_single_root_string_and_relative_root(library, monkeypatch):
    assert len(list(iter_image_files(str(library)))) == 5
    monkeypatch.chdir(library.parent)
    found = list(iter_image_files("photos"))
    assert len(found) == 5 and all(p.is_absolute() for p in found)


def test_hidden_files_and_dirs_skipped(library):
    make_jpeg(library / ".hidden" / "secret.jpg")
    make_jpeg(library / ".dotfile.jpg")
    (library / "._b.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # macOS resource fork
    assert len(list(iter_image_files([library]))) == 5


@pytest.mark.parametrize(
    "name",
    [
        "$RECYCLE.BIN",
        "System Volume Information",
        ".Trash-1000",
        ".Trashes",
        "@eaDir",
        ".thumbnails",
        "__MACOSX",
        "lost+found",
        ".git",
        "node_modules",
        "#recycle",
    ],
)
def test_system_dirs_skipped(library, name):
    make_jpeg(library / name / "thumb.jpg")
    make_jpeg(library / "2023" / name / "nested" / "thumb.jpg")
    found = rel(iter_image_files([library]), library)
    assert len(found) == 5 and not any(name in f for f in found)


def test_root_itself_may_be_hidden_or_odd(tmp_path):
    root = tmp_path / ".my photos"
    make_jpeg(root / "a.jpg")
    assert rel(iter_image_files([root]), root) == ["a.jpg"]


def test_unicode_names(tmp_path):
    root = tmp_path / "Fotos_été"
    make_jpeg(root / "fleur_été_花.jpg")
    make_jpeg(root / "Ünïcødé 📷" / "ça.jpg")
    found = list(iter_image_files([root]))
    assert sorted(p.name for p in found) == sorted(["fleur_été_花.jpg", "ça.jpg"])
    assert all(p.exists() for p in found)


def test_extensionless_and_unknown_extension_sniffed(tmp_path):
    root = tmp_path / "r"
    make_jpeg(root / "IMG_0001.jpg").rename(root / "IMG_0001")
    make_png(root / "export.dat")
    make_jpeg(root / "weird.backup")
    (root / "README").write_text("just text, no photo")
    (root / "empty").write_bytes(b"")
    (root / "data.bin").write_bytes(os.urandom(64))
    assert rel(iter_image_files([root]), root) == ["export.dat", "IMG_0001", "weird.backup"]


def test_known_non_image_extensions_not_sniffed(tmp_path):
    root = tmp_path / "r"
    make_jpeg(root / "video_thumb.thm")  # camera video thumbnail: JPEG inside, not a photo
    make_jpeg(root / "a.jpg").rename(root / "a.txt")
    assert list(iter_image_files([root])) == []


def test_bad_content_with_image_extension_still_yielded(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "broken.jpg").write_text("not really a jpeg")
    (root / "zero.png").write_bytes(b"")
    assert rel(iter_image_files([root]), root) == ["broken.jpg", "zero.png"]


def test_file_root(tmp_path):
    photo = make_jpeg(tmp_path / "one.jpg")
    assert list(iter_image_files([photo])) == [photo.absolute()]
    odd = tmp_path / "noext"
    odd.write_text("hi")
    assert list(iter_image_files([odd])) == [odd]  # explicit request: the decoder will judge it


def test_overlapping_roots_yield_each_file_once(library):
    sub = library / "2023"
    photo = library / "b.jpg"
    for roots in ([library, sub, photo], [sub, library, photo], [photo, library, library]):
        found = list(iter_image_files(roots))
        assert len(found) == len(set(found)) == 5


def test_missing_root_is_skipped(library, tmp_path):
    found = list(iter_image_files([tmp_path / "unplugged", library]))
    assert len(found) == 5


@needs_symlinks
def test_symlink_loop_terminates(library):
    os.symlink(library, library / "2023" / "loop")  # a folder linking to its grandparent
    os.symlink(library / "2023", library / "2023" / "summer" / "up")
    os.symlink(".", library / "self")
    found = list(iter_image_files([library]))
    assert len(found) == len(set(found)) == 5


@needs_symlinks
def test_symlinks_followed_or_not(tmp_path, library):
    elsewhere = tmp_path / "elsewhere"
    make_jpeg(elsewhere / "linked.jpg")
    os.symlink(elsewhere, library / "link_dir")
    os.symlink(library / "b.jpg", library / "z_alias.jpg")
    os.symlink(tmp_path / "gone.jpg", library / "dangling.jpg")
    followed = rel(iter_image_files([library]), library)
    assert "link_dir/linked.jpg" in followed and "z_alias.jpg" in followed
    assert "dangling.jpg" not in followed
    plain = rel(iter_image_files([library], follow_symlinks=False), library)
    assert "link_dir/linked.jpg" not in plain and "z_alias.jpg" not in plain
    assert len(plain) == 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_with_image_name_is_not_opened(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    os.mkfifo(root / "pipe.jpg")
    os.mkfifo(root / "pipe_noext")
    assert list(iter_image_files([root])) == []  # opening either would block forever


def test_unreadable_dir_chmod(library):
    if not permissions_enforced(library):
        pytest.skip("chmod 000 does not stop this user (root?)")
    locked = library / "2023"
    locked.chmod(0)
    try:
        assert rel(iter_image_files([library]), library) == ["A.png", "b.jpg"]
        assert not root_available(locked)
    finally:
        locked.chmod(0o755)


def test_unreadable_dir_is_logged_and_skipped(library, monkeypatch, caplog):
    real_scandir = os.scandir
    locked = str(library / "2023" / "summer")

    def fake_scandir(path):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(scan.os, "scandir", fake_scandir)
    with caplog.at_level("WARNING", logger="imgfinder.core.scan"):
        found = rel(iter_image_files([library]), library)
    assert found == ["2023/c.jpeg", "A.png", "b.jpg"]
    assert any("summer" in r.getMessage() for r in caplog.records)
    assert not root_available(locked)


def test_cancel_before_start(library):
    cancel = threading.Event()
    cancel.set()
    assert list(iter_image_files([library], cancel=cancel)) == []


def test_cancel_mid_scan(tmp_path):
    root = tmp_path / "r"
    for i in range(6):
        make_jpeg(root / f"d{i}" / "a.jpg", size=(8, 8))
    cancel = threading.Event()
    found = []
    for path in iter_image_files([root], cancel=cancel):
        found.append(path)
        if len(found) == 2:
            cancel.set()
    assert len(found) == 2


def test_root_available(tmp_path, library):
    assert root_available(library)
    assert root_available(str(library))
    assert not root_available(tmp_path / "unplugged")
    assert not root_available(library / "b.jpg")


def test_unsupported_image_formats_are_listed_and_skipped_with_a_reason(tmp_path, model_config):
    """An SVG beside the photos is not silently ignored: it shows as skipped, with why."""
    from imgfinder.core.library import Library, run
    from tests.imgutil import make_jpeg

    root = tmp_path / "Photos"
    root.mkdir()
    make_jpeg(root / "a.jpg", size=(64, 48))
    (root / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    assert [p.name for p in map(Path, scan.iter_image_files([root]))] == ["a.jpg", "logo.svg"]
    lib = Library(tmp_path / "data", model_config, index_backend="exact")
    try:
        summary = run(lib.index([root]))
    finally:
        lib.close()
    assert summary.indexed == 1
    assert summary.skipped == {str(root / "logo.svg"): "SVG vector drawings are not supported"}

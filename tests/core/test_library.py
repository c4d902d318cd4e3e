"""Indexing a library end to end: incremental runs, moves, deletions, model changes, crashes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imgfinder.core import decode
from imgfinder.core import vectors as vectors_mod
from imgfinder.core.extract import ModelConfig
from imgfinder.core.library import Library, run
from imgfinder.errors import ImgfinderError, ModelMismatchError
from tests.common import TEST_INPUT_SIZE, cli_args
from tests.imgutil import make_jpeg


def make_photos(folder: Path, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        make_jpeg(folder / f"photo_{i:03d}.jpg", size=(160 + 8 * (i % 5), 120), seed=i)
        for i in range(start, start + n)
    ]


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "Photos"
    make_photos(root, 6)
    make_photos(root / "sub dir été", 2, start=100)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not a photo")
    return root


@pytest.fixture
def lib(tmp_path, model_config):
    lib = Library(tmp_path / "data", model_config, index_backend="exact")
    yield lib
    lib.close()


def test_index_search_and_skip_bad_files(lib, photos):
    progress = []
    summary = run(lib.index([photos]), progress.append)
    assert summary.indexed == 8
    assert set(summary.skipped) == {str(photos / "broken.jpg"), str(photos / "empty.png")}
    assert all(summary.skipped.values())  # every skip has a reason
    assert any(p.stage == "extract" and p.done == p.total for p in progress)
    status = lib.status()
    assert status["images"] == 8 and status["failed"] == 2
    query = photos / "photo_002.jpg"
    hits = lib.search(query, k=5)
    assert len(hits) == 5
    assert hits[0].path == str(query) and hits[0].score == pytest.approx(1.0, abs=2e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_reindex_is_incremental(lib, photos):
    run(lib.index([photos]))
    again = run(lib.index())
    assert again.indexed == 0 and again.unchanged == 10 and again.removed == 0


def test_changed_file_is_reextracted(lib, photos):
    run(lib.index([photos]))
    target = photos / "photo_001.jpg"
    make_jpeg(target, size=(200, 150), seed=999)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    summary = run(lib.index())
    assert summary.indexed == 1 and summary.moved == 0
    hits = lib.search(target, k=1)
    assert hits[0].path == str(target) and hits[0].score == pytest.approx(1.0, abs=2e-3)


def test_moved_file_keeps_vector_without_decoding(lib, photos, monkeypatch):
    run(lib.index([photos]))
    before = lib.catalog.image_by_path(str(photos / "photo_003.jpg"))
    new_path = photos / "sub dir été" / "renamed.jpg"
    shutil.move(photos / "photo_003.jpg", new_path)
    calls = []
    real = decode.open_image
    monkeypatch.setattr(decode, "open_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    summary = run(lib.index())
    assert summary.moved == 1 and summary.removed == 1
    assert calls == []  # re-used by content hash, never decoded
    after = lib.catalog.image_by_path(str(new_path))
    assert after.vec_row == before.vec_row and after.hash == before.hash
    assert lib.catalog.image_by_path(str(photos / "photo_003.jpg")) is None
    assert lib.search(new_path, k=1)[0].path == str(new_path)


def test_deleted_file_leaves_catalog_and_index(lib, photos):
    run(lib.index([photos]))
    gone = photos / "photo_004.jpg"
    query = make_jpeg(photos.parent / "outside.jpg", seed=4)  # same pixels as the deleted one
    gone.unlink()
    summary = run(lib.index())
    assert summary.removed == 1
    assert all(h.path != str(gone) for h in lib.search(query, k=20))
    assert lib.status()["images"] == 7


def test_missing_root_keeps_entries(lib, photos, tmp_path):
    run(lib.index([photos]))
    offline = tmp_path / "unplugged"
    photos.rename(offline)
    summary = run(lib.index())
    assert summary.missing_roots == [str(photos)] and summary.removed == 0
    assert lib.status()["images"] == 8
    assert lib.roots()[0].available is False


def test_nested_roots(lib, photos):
    lib.add_root(photos / "sub dir été")
    lib.add_root(photos)  # a parent absorbs the child root
    assert [r.path for r in lib.roots()] == [str(photos)]
    with pytest.raises(ImgfinderError, match="already inside"):
        lib.add_root(photos / "sub dir été")
    with pytest.raises(ImgfinderError, match="no such folder"):
        lib.add_root(photos / "nope")


def test_remove_root_forgets_images(lib, photos):
    run(lib.index([photos]))
    assert lib.remove_root(photos) == 10
    assert lib.status()["images"] == 0
    assert lib.search(photos / "photo_000.jpg", k=3) == []
    assert photos.joinpath("photo_000.jpg").exists()  # files untouched


def test_model_change_requires_reindex(tmp_path, photos, model_config, weights_file):
    data = tmp_path / "data"
    with_64 = Library(data, model_config, index_backend="exact")
    run(with_64.index([photos]))
    with_64.close()
    cfg96 = ModelConfig(weights=str(weights_file), device="cpu", input_size=96)
    with_96 = Library(data, cfg96, index_backend="exact")
    with pytest.raises(ModelMismatchError, match="re-index needed"):
        with_96.search(photos / "photo_000.jpg")
    assert with_96.status()["stale"] == 8
    summary = run(with_96.index())
    assert summary.indexed == 8
    assert with_96.search(photos / "photo_000.jpg", k=1)[0].path == str(photos / "photo_000.jpg")
    with_96.close()


def test_compaction_drops_dead_rows(lib, photos, monkeypatch):
    monkeypatch.setattr(vectors_mod, "COMPACT_MIN_DEAD", 1)
    monkeypatch.setattr(vectors_mod, "COMPACT_DEAD_FRACTION", 0.1)
    run(lib.index([photos]))
    for i in (0, 1, 2):
        (photos / f"photo_{i:03d}.jpg").unlink()
    run(lib.index())
    assert len(lib.store()) == 5
    for i in (3, 4, 5):
        q = photos / f"photo_{i:03d}.jpg"
        assert lib.search(q, k=1)[0].path == str(q)
    reopened = Library(lib.data_dir, lib.config, index_backend="exact")
    q = photos / "photo_005.jpg"
    assert reopened.search(q, k=1)[0].path == str(q)
    assert len(list((lib.data_dir / "vectors").glob("*.f16"))) == 1
    reopened.close()


def test_kill_during_indexing_leaves_a_loadable_store(tmp_path, weights_file, model_config):
    root = tmp_path / "many"
    make_photos(root, 48)
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "imgfinder", *cli_args(data, weights_file), "index", str(root)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    # wait until some batches are committed, then kill -9 mid-run
    deadline = time.time() + 120
    lib = None
    while time.time() < deadline:
        time.sleep(0.2)
        if (data / "catalog.sqlite").exists():
            probe = Library(data, model_config, index_backend="exact")
            n = probe.catalog.counts().get("ok", 0)
            probe.close()
            if n >= 16:
                break
        if proc.poll() is not None:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lib = Library(data, model_config, index_backend="exact")
    partial = lib.catalog.counts().get("ok", 0)
    assert 0 < partial <= 48
    store_rows = len(lib.store())
    assert all(row < store_rows for _, row in lib.catalog.vector_rows(lib.model_id))
    summary = run(lib.index())
    assert summary.indexed + summary.unchanged == 48
    assert lib.status()["images"] == 48
    q = root / "photo_040.jpg"
    assert lib.search(q, k=1)[0].path == str(q)
    vecs = lib.store().get(np.arange(len(lib.store())))
    assert np.isfinite(vecs.astype(np.float32)).all()
    lib.close()


def test_input_size_is_used(lib):
    assert lib.extractor.input_size == TEST_INPUT_SIZE


def test_index_only_some_folders(lib, tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    make_photos(a, 2)
    make_photos(b, 2, start=10)
    run(lib.index([a, b]))
    make_photos(a, 1, start=20)
    make_photos(b, 1, start=30)
    summary = run(lib.index(only=[a / "photo_020.jpg"]))
    assert summary.indexed == 1 and summary.unchanged == 2
    assert lib.status()["images"] == 5


def test_catalog_records_the_photos_real_size(lib, tmp_path):
    folder = tmp_path / "big"
    make_jpeg(folder / "wide.jpg", size=(1600, 1200), seed=5, orientation=6)
    run(lib.index([folder]))
    row = lib.catalog.image_by_path(str(folder / "wide.jpg"))
    assert (row.width, row.height) == (1200, 1600)  # upright size, not the draft decode's

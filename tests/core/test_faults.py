"""Fault injection: odd names, damaged stores, full disk, two processes, kills, bad input.

Small trial counts so this fits `make test`; benchmarks/faults.py runs the same faults many
times and prints trials -> failures. Seeded random-init model at 64 px (plumbing, not quality).
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from imgfinder import lock as lock_mod
from imgfinder.cli import main as cli_main
from imgfinder.core import vectors as vectors_mod
from imgfinder.core.catalog import Catalog, display_path
from imgfinder.core.dupes import store as dupe_store
from imgfinder.core.extract import ModelConfig
from imgfinder.core.library import Library, remove_stale_temp_files, run
from imgfinder.errors import DecodeError, LibraryBusyError
from tests import faultkit
from tests.common import TEST_INPUT_SIZE, cli_args
from tests.imgutil import make_jpeg

BAD_NAME = b"bad\xff name.jpg"  # not UTF-8: Latin-1 bytes from an old camera card
N_PHOTOS = 10


def _config(weights: Path) -> ModelConfig:
    return ModelConfig(weights=str(weights), device="cpu", input_size=TEST_INPUT_SIZE)


@pytest.fixture(autouse=True)
def _one_model(monkeypatch, shared_extractor):
    """Every Library here reuses one loaded model (same weights and input size): fast."""
    real_init = Library.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self._extractor = shared_extractor

    monkeypatch.setattr(Library, "__init__", init)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, weights_file, shared_extractor):
    """Photos (one with a non-UTF-8 name), indexed once, plus a decision; copied per test."""
    base = tmp_path_factory.mktemp("faults")
    photos = base / "photos"
    photos.mkdir()
    for i in range(N_PHOTOS - 1):
        make_jpeg(photos / f"p{i:02d}.jpg", size=(96 + 4 * i, 80), seed=i)
    bad = os.path.join(os.fsencode(photos), BAD_NAME)
    try:
        shutil.copyfile(os.fsencode(photos / "p00.jpg"), bad)
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    data = base / "data"
    lib = Library(data, _config(weights_file))
    lib._extractor = shared_extractor
    summary = run(lib.index([photos]))
    assert summary.indexed == N_PHOTOS, summary.skipped
    hashes = sorted({r.hash for r in lib.catalog.images_under(lib.catalog.roots()[0][0]).values()})
    dupe_store.remember(lib.catalog, [(hashes[0], hashes[1])], dupe_store.DISTINCT)
    reference = faultkit.vectors_by_path(lib)
    lib.close()
    return {"photos": photos, "data": data, "reference": reference}


@pytest.fixture
def copy(pristine, tmp_path):
    data = tmp_path / "lib"
    shutil.copytree(pristine["data"], data)
    return data


def test_non_utf8_name_is_indexed_found_and_shown(pristine, copy, weights_file, capfd):
    photos = pristine["photos"]
    bad = os.fsdecode(os.path.join(os.fsencode(photos), BAD_NAME))
    lib = Library(copy, _config(weights_file), index_backend="exact")
    assert lib.status()["images"] == N_PHOTOS
    row = lib.catalog.image_by_path(bad)
    assert row is not None and row.path == bad and os.path.exists(row.path)
    assert lib.search(bad, k=1)[0].path == bad
    assert display_path(bad).endswith("bad\\xff name.jpg")
    assert run(lib.index()).unchanged == N_PHOTOS  # nothing re-extracted, no orphan rows
    lib.close()
    # the CLI prints it without a traceback; into a pipe the real bytes come back
    rc = cli_main([*cli_args(copy, weights_file), "search", bad])
    out, err = capfd.readouterr()
    assert rc == 0 and "Traceback" not in err
    assert "bad" in out


@pytest.mark.parametrize("mode", faultkit.VECTOR_DAMAGE)
def test_damaged_vector_file_is_detected_and_only_affected_rows_reextracted(
    pristine, copy, weights_file, mode
):
    rng = random.Random(mode)
    cfg = _config(weights_file)
    (vec_file,) = (copy / "vectors").glob("*.f16")
    faultkit.damage_vectors(vec_file, mode, rng)
    lib = Library(copy, cfg, index_backend="exact")
    damaged = lib.status()["vectors_damaged"]
    assert damaged > 0
    q = pristine["photos"] / "p03.jpg"
    lib.search(q, k=3)  # never a traceback; damaged rows are left out
    summary = run(lib.index())
    assert summary.repaired == damaged
    assert summary.indexed == damaged and summary.unchanged == N_PHOTOS - damaged
    assert faultkit.check_consistent(lib) == []
    again = faultkit.vectors_by_path(lib)
    ref = pristine["reference"]
    assert again.keys() == ref.keys()
    for p, v in ref.items():
        np.testing.assert_allclose(again[p].astype(np.float32), v.astype(np.float32), atol=2e-3)
    assert lib.status()["vectors_damaged"] == 0
    assert lib.search(q, k=1)[0].path == str(q)
    lib.close()


def test_version1_store_is_read_then_migrated(pristine, copy, weights_file):
    """A store written before row checksums (format 1) still loads, and a writer upgrades it."""
    (vec_file,) = (copy / "vectors").glob("*.f16")
    raw = vec_file.read_bytes()
    header, body = bytearray(raw[:64]), raw[64:]
    header[8:12] = (1).to_bytes(4, "little")
    dim = int.from_bytes(header[12:16], "little")
    rows = np.frombuffer(body, dtype=vectors_mod.row_dtype(dim, 2))
    vec_file.write_bytes(bytes(header) + np.ascontiguousarray(rows["v"]).tobytes())
    lib = Library(copy, _config(weights_file), index_backend="exact")
    assert lib.store().version == 1
    q = pristine["photos"] / "p05.jpg"
    assert lib.search(q, k=1)[0].path == str(q)
    assert run(lib.index()).unchanged == N_PHOTOS
    assert lib.store().version == vectors_mod.VERSION
    (new_file,) = (copy / "vectors").glob("*.f16")
    assert new_file.name != vec_file.name
    assert faultkit.check_consistent(lib) == []
    lib.close()


@pytest.mark.parametrize("mode", faultkit.CATALOG_DAMAGE)
def test_damaged_catalog_is_moved_aside_and_rebuilt(pristine, copy, weights_file, mode):
    faultkit.damage_catalog(copy / "catalog.sqlite", mode, random.Random(mode))
    lib = Library(copy, _config(weights_file))
    assert lib.recovery is not None, "damage went unnoticed"
    assert "damaged" in lib.recovery.message()
    assert [p for _, p in lib.catalog.roots()] == [str(pristine["photos"])]
    assert len(dupe_store.load_decisions(lib.catalog)) == 1
    aside = [
        f for f in copy.glob("catalog.sqlite.damaged-*") if not f.name.endswith(("-wal", "-shm"))
    ]
    assert len(aside) == 1 and aside[0].exists()  # moved aside, never deleted
    summary = run(lib.index())
    assert summary.indexed + summary.unchanged == N_PHOTOS
    assert faultkit.check_consistent(lib) == []
    lib.close()
    assert Library(copy, _config(weights_file)).recovery is None  # healthy from now on


def test_deleted_catalog_gets_folders_and_decisions_back(pristine, copy, weights_file):
    for f in copy.glob("catalog.sqlite*"):
        f.unlink()
    lib = Library(copy, _config(weights_file))
    assert lib.recovery is not None
    assert [p for _, p in lib.catalog.roots()] == [str(pristine["photos"])]
    assert len(dupe_store.load_decisions(lib.catalog)) == 1
    lib.close()


@pytest.mark.parametrize("mode", faultkit.INDEX_DAMAGE)
def test_damaged_index_file_is_rebuilt_in_memory_and_saved_by_the_next_writer(
    pristine, copy, weights_file, mode
):
    (idx,) = (copy / "index").glob("*.idx")
    faultkit.damage_index(idx, mode, random.Random(mode))
    before = idx.stat().st_mtime_ns if idx.exists() else None
    lib = Library(copy, _config(weights_file))
    q = pristine["photos"] / "p02.jpg"
    assert lib.search(q, k=1)[0].path == str(q)
    assert (idx.stat().st_mtime_ns if idx.exists() else None) == before  # search never writes
    run(lib.index())
    assert idx.exists()
    lib.close()
    lib = Library(copy, _config(weights_file))
    assert lib.search(q, k=1)[0].path == str(q)
    lib.close()


def test_readers_never_write_nor_trim_a_writers_tail(pristine, copy, weights_file):
    (vec_file,) = (copy / "vectors").glob("*.f16")
    with open(vec_file, "ab") as fh:
        fh.write(b"\x01" * 100)  # a live writer's append in flight
    snapshot = {f: f.stat().st_mtime_ns for f in copy.rglob("*") if f.is_file()}
    size = vec_file.stat().st_size
    lib = Library(copy, _config(weights_file), index_backend="exact")
    lib.search(pristine["photos"] / "p01.jpg", k=3)
    lib.status()
    lib.close()
    assert vec_file.stat().st_size == size
    changed = [
        f
        for f in copy.rglob("*")
        if f.is_file()
        and f.suffix not in (".log", ".sqlite-wal", ".sqlite-shm")
        and snapshot.get(f) != f.stat().st_mtime_ns
    ]
    assert [f for f in changed if "logs" not in f.parts] == []


def test_disk_full_gives_one_line_and_leaves_everything_loadable(
    pristine, tmp_path, weights_file, monkeypatch, capfd
):
    data = tmp_path / "full"
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up after a few durable writes
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rc = cli_main([*cli_args(data, weights_file), "index", str(pristine["photos"])])
    out, err = capfd.readouterr()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert rc == 4
    assert "Traceback" not in err and "disk full" in err
    assert len([ln for ln in err.splitlines() if ln.startswith("imgfinder: error")]) == 1
    lib = Library(data, _config(weights_file))
    assert faultkit.check_consistent(lib) == []
    assert [p for _, p in lib.catalog.roots()] == [str(pristine["photos"])]
    summary = run(lib.index())
    assert summary.indexed + summary.unchanged == N_PHOTOS
    lib.close()


def test_second_writer_is_refused_with_the_holder_named(copy, weights_file, pristine):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from imgfinder.lock import WriterLock;"
            f"WriterLock({str(copy)!r}).acquire('indexing'); print('held', flush=True);"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        lib = Library(copy, _config(weights_file))
        with pytest.raises(LibraryBusyError, match=f"indexing in progress in process {holder.pid}"):
            run(lib.index())
        assert lib.status()["writer"]["pid"] == holder.pid
        q = pristine["photos"] / "p04.jpg"
        assert lib.search(q, k=1)[0].path == str(q)  # readers go on meanwhile
    finally:
        holder.kill()
        holder.wait()
    # the holder died (kill -9 has the same effect): its stale lock is taken over
    assert lib.writer_lock.holder() is None
    assert run(lib.index()).unchanged == N_PHOTOS
    lib.close()


def test_two_index_processes_extract_each_photo_once(pristine, tmp_path, weights_file):
    data = tmp_path / "two"
    cmd = [sys.executable, "-m", "imgfinder", *cli_args(data, weights_file), "index"]
    cmd.append(str(pristine["photos"]))
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all("Traceback" not in e.decode() for _, e, _ in results)
    assert sorted(rc for _, _, rc in results) in ([0, 0], [0, 2])
    lib = Library(data, _config(weights_file))
    assert len(lib.store()) <= N_PHOTOS  # nothing extracted twice: no wasted rows
    assert faultkit.check_consistent(lib) == []
    lib.close()


def test_kill9_during_index_never_leaves_an_unloadable_store(pristine, tmp_path, weights_file):
    rng = random.Random(14)
    data = tmp_path / "killed"
    cmd = faultkit.imgfinder_cmd(
        data, weights_file, TEST_INPUT_SIZE, "index", str(pristine["photos"])
    )
    for _ in range(2):
        faultkit.kill_at_random(cmd, rng, 2.0, 6.0)
        lib = Library(data, _config(weights_file))
        assert faultkit.check_consistent(lib) == []
        lib.close()
    lib = Library(data, _config(weights_file))
    run(lib.index([pristine["photos"]]))
    got = faultkit.vectors_by_path(lib)
    assert got.keys() == pristine["reference"].keys()
    assert [p for _, p in lib.catalog.roots()] == [str(pristine["photos"])]
    lib.close()


def test_stale_temp_files_are_removed_at_open_live_ones_kept(copy, weights_file):
    dead = copy / "index" / ".lsh.idx.p999999999.abc.tmp"
    live = copy / "models" / f".weights-x.pt.p{os.getpid()}.abc.tmp"
    old = copy / "index" / ".lsh.idx.zzz.tmp"
    young = copy / "index" / ".lsh.idx.yyy.tmp"
    for f in (dead, live, old, young):
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x" * 1000)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    lib = Library(copy, _config(weights_file), index_backend="exact")
    assert not dead.exists() and not old.exists()
    assert live.exists() and young.exists()
    assert lib.disk_usage()["index"] == sum(
        f.stat().st_size for f in (copy / "index").glob("*.idx")
    )
    lib.close()
    assert remove_stale_temp_files(copy, min_age_s=0) == [young]


def test_query_that_would_block_is_refused(tmp_path, copy, weights_file):
    lib = Library(copy, _config(weights_file), index_backend="exact")
    fifo = tmp_path / "pipe.jpg"
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(fifo)
    result = {}

    def go():
        try:
            lib.search(fifo)
        except DecodeError as exc:
            result["err"] = str(exc)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "search on a FIFO blocked"
    assert "not a regular file" in result["err"]
    for bad, why in ((tmp_path, "is a directory"), (tmp_path / "nope.jpg", "file not found")):
        with pytest.raises(DecodeError, match=why):
            lib.search(bad)
    lib.close()


def test_bad_input_corpus_gives_one_line_errors(tmp_path, copy, weights_file, capfd):
    """Every bad input the CLI can get: a clear line and a non-zero exit, never a traceback."""
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    os.mkfifo(tmp_path / "fifo")
    g = cli_args(copy, weights_file)
    cases = [
        [*g, "search", str(tmp_path / "fifo")],
        [*g, "search", "/dev/null"],
        [*g, "search", str(tmp_path)],
        [*g, "search", str(tmp_path / "missing.jpg")],
        [*g, "search", str(tmp_path / "empty.jpg")],
        [*g, "search", str(tmp_path / "text.jpg")],
        [*g, "search", str(tmp_path / "text.jpg"), "-k", "0"],
        [*g, "index", str(tmp_path / "missing-folder")],
        [*g, "roots", "remove", str(tmp_path / "never-added")],
        [*g, "whiten", "--dim", "0"],
    ]
    for argv in cases:
        rc = cli_main(argv)
        _, err = capfd.readouterr()
        assert rc != 0, argv
        assert "Traceback" not in err, (argv, err)
        lines = [ln for ln in err.splitlines() if ln.startswith("imgfinder: error")]
        assert len(lines) == 1, (argv, err)


def test_app_notices_changes_made_by_another_process(pristine, copy, weights_file, tmp_path):
    """The app polls changed_elsewhere(); another connection's commits (another process's
    `imgfinder index`, here a second Library on its own connection) make it reload."""
    app = Library(copy, _config(weights_file), index_backend="exact")
    app.search(pristine["photos"] / "p01.jpg", k=1)
    assert not app.changed_elsewhere()
    more = tmp_path / "more"
    make_jpeg(more / "new.jpg", size=(90, 90), seed=77)
    other = Library(copy, _config(weights_file), index_backend="exact")
    run(other.index([more]))
    other.close()
    assert app.changed_elsewhere()
    assert str(more) in [r.path for r in app.roots()]
    assert app.search(more / "new.jpg", k=1)[0].path == str(more / "new.jpg")
    assert not app.changed_elsewhere()
    app.close()


def test_lock_without_os_locking_uses_the_pid(tmp_path, monkeypatch):
    """Where flock is unsupported (some network shares) a live PID blocks, a dead one is stale."""

    def no_locks(fd):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_mod, "_try_lock", no_locks)
    path = tmp_path / lock_mod.LOCK_NAME
    path.write_text('{"pid": 999999999, "what": "indexing", "since": 0}')
    lk = lock_mod.WriterLock(tmp_path)
    lk.acquire("indexing")  # dead PID: stale lock broken
    assert lock_mod.read_holder(path)["pid"] == os.getpid()
    lk.release()
    path.write_text(f'{{"pid": {os.getppid()}, "what": "indexing", "since": 0}}')
    with pytest.raises(LibraryBusyError, match=str(os.getppid())):
        lock_mod.WriterLock(tmp_path).acquire("indexing")


def test_catalog_zero_bytes_is_damage_not_a_new_library(tmp_path):
    from imgfinder.errors import CatalogDamagedError

    cat = Catalog(tmp_path / "c.sqlite")
    cat.add_root("/photos")
    cat.close()
    os.truncate(tmp_path / "c.sqlite", 0)
    for f in tmp_path.glob("c.sqlite-*"):
        f.unlink()
    with pytest.raises(CatalogDamagedError, match="empty"):
        Catalog(tmp_path / "c.sqlite")

"""Worker processes of the no-CNN duplicate path (core/dupes/workers.py): signing and the
geometric check give what threads give, a dying worker loses nothing it should keep, and the
BLAS limit is restored."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from imgfinder.core import scan
from imgfinder.core.catalog import SIGNED, Catalog
from imgfinder.core.dupes import pairs as pairs_mod
from imgfinder.core.dupes import sigindex, store
from imgfinder.core.dupes import workers as worker_procs
from imgfinder.core.library import run
from tests.core.test_dupes_library import build_photos, snapshot


def _rows(data: Path) -> dict:
    cat = Catalog(data / "catalog.sqlite")
    try:
        rows = {
            p: (r.size, r.mtime_ns, r.hash, r.width, r.height, r.status, r.error)
            for rid, _ in cat.roots()
            for p, r in cat.images_under(rid).items()
        }
        sigs = store.load_signatures(cat, [v[2] for v in rows.values() if v[2]])
        return {"rows": rows, "sigs": sigs}
    finally:
        cat.close()


@pytest.fixture(scope="module")
def two_ways(tmp_path_factory):
    """The same photos (and one unreadable file) signed and scanned in threads and in worker
    processes, each into its own data dir."""
    root = tmp_path_factory.mktemp("workers")
    photos = build_photos(root / "photos")
    (root / "photos" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    before = snapshot(root / "photos")
    out = {}
    for name, procs in (("threads", False), ("processes", True)):
        data = root / name
        with pytest.MonkeyPatch.context() as mp:  # batches of 4: all but the first in workers
            mp.setattr(sigindex, "BATCH", 4)
            mp.setattr(sigindex, "CHUNK", 2)
            worker_procs.reset(wait=True)
            summary = run(sigindex.index_signatures(data, [root / "photos"], processes=procs))
            assert (worker_procs._pool is not None) == procs  # workers started only when told
        cat = Catalog(data / "catalog.sqlite")
        try:
            pl = run(sigindex.scan_signatures(cat, data, processes=procs))
        finally:
            cat.close()
        out[name] = (summary, _rows(data), pl)
    assert snapshot(root / "photos") == before  # workers only read
    return photos, out


def test_processes_sign_like_threads(two_ways):
    photos, out = two_ways
    (s_t, rows_t, _), (s_p, rows_p, _) = out["threads"], out["processes"]
    assert s_p.indexed == s_t.indexed == len(photos)
    assert set(s_p.skipped) == set(s_t.skipped) == {p for p in rows_t["rows"] if "broken" in p}
    assert rows_p["rows"] == rows_t["rows"]
    assert rows_p["rows"][next(iter(s_p.skipped))][5] == "failed"
    assert rows_p["sigs"].keys() == rows_t["sigs"].keys()
    for h, s in rows_t["sigs"].items():
        assert np.array_equal(rows_p["sigs"][h], s)


def test_processes_check_pairs_like_threads(two_ways):
    _, out = two_ways
    pl_t, pl_p = out["threads"][2], out["processes"][2]
    assert pl_p.stats["verify_batches"] >= 1 and "verify_batches" not in pl_t.stats
    assert pl_p.stats["verify_decodes"] > 0
    assert np.array_equal(pl_p.a, pl_t.a) and np.array_equal(pl_p.b, pl_t.b)
    np.testing.assert_allclose(pl_p.copy, pl_t.copy, atol=1e-6)  # NaN where unverified, both
    assert np.isfinite(pl_p.copy).sum() > 0


def test_a_dying_signing_worker_costs_only_the_file_that_kills_it(tmp_path, monkeypatch):
    """The pool breaks: the batch is read again one file per task; the file whose task breaks
    it again is recorded failed with its size and mtime (not read again until it changes)."""
    photos = build_photos(tmp_path / "photos")
    found = [str(f) for f in scan.iter_image_files([tmp_path / "photos"])]
    bad = found[-1]  # the first batch is read in threads while the workers start
    monkeypatch.setattr(sigindex, "BATCH", 3)
    monkeypatch.setattr(sigindex, "CHUNK", 2)

    class FakePool:  # runs in-process; a task holding `bad` "kills its worker"
        def submit(self, fn, *args):
            fut: Future = Future()
            if args and bad in args[0]:
                fut.set_exception(worker_procs.BrokenProcessPool("worker died"))
            else:
                fut.set_result(fn(*args))
            return fut

    resets: list[int] = []
    monkeypatch.setattr(worker_procs, "pool", lambda n=None: FakePool())
    monkeypatch.setattr(worker_procs, "reset", lambda wait=False: resets.append(1))
    summary = run(
        sigindex.index_signatures(tmp_path / "data", [tmp_path / "photos"], processes=True)
    )
    assert summary.skipped == {bad: sigindex.CRASHED}
    assert summary.indexed == len(photos) - 1 and resets
    cat = Catalog(tmp_path / "data" / "catalog.sqlite")
    try:
        row = cat.image_by_path(bad)
        assert row.status == "failed" and row.error == sigindex.CRASHED
        assert row.size == Path(bad).stat().st_size
        assert cat.counts().get(SIGNED) == len(photos) - 1
    finally:
        cat.close()
    again = run(sigindex.index_signatures(tmp_path / "data", processes=True))
    assert again.indexed == 0 and not again.skipped  # unchanged: not read again


def test_a_lost_check_chunk_leaves_its_pairs_unverified_and_uncached():
    """find_pairs(verify_batch=...): a chunk whose worker died scores NaN, is not cached, and
    the other chunks count."""
    rng = np.random.default_rng(1)
    n = 8
    sigs = rng.standard_normal((n, 144)).astype(np.float32)
    sigs[1::2] = sigs[0::2] + 0.01 * rng.standard_normal((n // 2, 144)).astype(np.float32)
    sigs /= np.linalg.norm(sigs, axis=1, keepdims=True)
    calls = []

    def batch(triples):
        fut: Future = Future()
        if calls:
            fut.set_exception(worker_procs.BrokenProcessPool("worker died"))
        else:
            fut.set_result(([0.9] * len(triples), 2 * len(triples)))
        calls.append(triples)
        return fut

    verified: dict = {}
    pl = run(
        pairs_mod.find_pairs(
            None,
            np.arange(n, dtype=np.int64),
            [f"/p{i}.jpg" for i in range(n)],
            [f"{i:032x}" for i in range(n)],
            sigs,
            verifier=lambda i, j, o: 0.5,
            verified=verified,
            verify_batch=batch,
            batch_min=0,
        )
    )
    sent = [t for c in calls for t in c]
    assert len(calls) >= 2 or len(sent) <= pairs_mod.BATCH_PAIRS
    first = {(a, b) for a, b, _ in calls[0]}
    got = {(int(a), int(b)): float(c) for a, b, c in zip(pl.a, pl.b, pl.copy)}
    assert all(got[p] == pytest.approx(0.9) for p in first)
    lost = [(a, b) for c in calls[1:] for a, b, _ in c]
    assert all(np.isnan(got[p]) for p in lost)
    assert pl.stats.get("verify_lost", 0) == len(lost)
    assert len(verified) == len(first)


def test_one_blas_thread_restores_the_setting():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        return [i["num_threads"] for i in info]

    before = blas_threads()
    if not before:
        pytest.skip("numpy has no BLAS threadpoolctl can see")
    with worker_procs.one_blas_thread():
        with worker_procs.one_blas_thread():
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}  # still inside the outer block
    assert blas_threads() == before


def test_use_processes_rules(monkeypatch):
    monkeypatch.delenv(worker_procs.ENV, raising=False)
    monkeypatch.setattr(worker_procs.os, "cpu_count", lambda: 2)
    assert worker_procs.use_processes(5000, 1000)
    assert not worker_procs.use_processes(999, 1000)
    assert worker_procs.use_processes(1, 1000, True)
    assert not worker_procs.use_processes(5000, 1000, False)
    assert worker_procs.processes_allowed()
    monkeypatch.setenv(worker_procs.ENV, "0")
    assert not worker_procs.use_processes(5000, 1000)
    assert not worker_procs.processes_allowed()
    assert worker_procs.processes_allowed(True)
    monkeypatch.delenv(worker_procs.ENV)
    monkeypatch.setattr(worker_procs.os, "cpu_count", lambda: 1)
    assert not worker_procs.use_processes(5000, 1000)
    assert not worker_procs.processes_allowed()
    assert not worker_procs.processes_allowed(False)

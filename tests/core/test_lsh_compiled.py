"""The compiled (numba) LSH candidate stage against the numpy engine it replaces: the same
rows and scores, bit for bit, ties included; its loading, cache folder and fallback."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgfinder.core.index import LSHIndex, open_index
from imgfinder.core.index import _numba as nb

_SYN = Path(__file__).resolve().parents[2] / "benchmarks" / "synthetic.py"
_spec = importlib.util.spec_from_file_location("imgfinder_bench_synthetic_nb", _SYN)
synthetic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic)

needs_numba = pytest.mark.skipif(
    importlib.util.find_spec("numba") is None, reason="numba not installed"
)


@pytest.fixture(scope="module")
def kern():
    if not nb.enabled():
        pytest.skip("compiled kernels disabled (IMGFINDER_NUMBA=0 or no numba)")
    mod = nb.get(wait=True)
    assert mod is not None
    return mod


def _both(idx: LSHIndex, qs: np.ndarray, k: int, exclude=None):
    """(compiled, numpy) results of the block engine: lists of (rows, scores)."""
    projs = idx._project(qs)
    codes = idx._pack(projs)
    out = []
    for force in (False, True):
        idx._force_numpy = force
        out.append(list(idx._search_many(qs, projs, codes, k, exclude)))
    idx._force_numpy = False
    return out


def _assert_same(a, b):
    assert len(a) == len(b)
    for (ra, sa), (rb, sb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(sa, sb)


def _broad(n=5000, nq=60, dim=96, seed=3, **kw):
    model = synthetic.BroadClusters(dim, seed=seed, **kw)
    return model.sample(n, seed + 1), model.sample(nq, seed + 2).astype(np.float32)


@needs_numba
@pytest.mark.parametrize(
    "params",
    [
        dict(),  # calibrated
        dict(probes=64, rerank=40, prefilter=300, refine=0),  # Hamming prefilter + sketch
        dict(probes=200, rerank=30, prefilter=0, refine=0),  # sketch over every candidate
        dict(probes=8, rerank=400, prefilter=0, refine=0),  # few candidates: no selection
        dict(probes=96, rerank=60, prefilter=120, refine=12),  # refine stage after it
    ],
)
def test_compiled_selection_equals_numpy(kern, params):
    """Rows the compiled pass hands to the re-rank equal the numpy engine's (same order),
    so the results (rows and exact cosines) are identical, for k below and above 10."""
    base, qs = _broad()
    idx = LSHIndex(base.shape[1], seed=4, exact_fallback=False, **params)
    idx.add(np.arange(len(base)), base)
    idx.build()
    for k in (1, 10, 33):
        comp, ref = _both(idx, qs, k)
        _assert_same(comp, ref)
    # the (Q, depth) selection itself, block for block
    projs = idx._project(qs[:20])
    codes = idx._pack(projs)
    w, _ = idx._sketch_query(qs[:20])
    seen = np.zeros(idx._n_rows, np.int32)
    for p in (idx._probes, 2 * idx._probes):
        got, counts = idx._select_compiled(
            kern, projs, codes, p, None, w.astype(np.int32), 10, seen
        )
        flat, _, ends = idx._gather(projs, codes, p, False)
        rows, qid, want_counts = idx._dedup_block(flat, ends, None, seen)
        want = idx._select_block(rows, qid, want_counts, codes, w, 10)
        np.testing.assert_array_equal(counts, want_counts)
        pad = np.full((len(qs[:20]), idx._depth(10)), -1, np.int64)
        pad[:, : want.shape[1]] = want
        np.testing.assert_array_equal(got, pad)


@needs_numba
def test_compiled_equals_numpy_with_ties_pending_removed_and_excluded(kern):
    """Identical copies (exact ties at every stage), pending (un-bucketed) rows, tombstones
    and per-query exclusions (calibration's held-out check) give the same rows and scores;
    `query` and `query_batch` agree under the compiled engine."""
    base, qs = _broad(n=4000, seed=9, rank=32)
    idx = LSHIndex(base.shape[1], seed=1, exact_fallback=False, probes=48, rerank=30)
    idx.params["prefilter"] = 200
    idx.add(np.arange(len(base)), base)
    idx.build()
    idx.add(np.arange(60) + 10_000, base[:60])  # copies: ties; pending rows
    idx.remove(np.arange(100, 500))
    assert idx._n_rows > idx._n_tabled and idx._live < idx._n_rows
    allq = np.concatenate([qs, base[:30].astype(np.float32)])
    for k in (1, 10, 45):
        comp, ref = _both(idx, allq, k)
        _assert_same(comp, ref)
    ex = np.arange(len(allq), dtype=np.int64)  # row j hidden from query j
    _assert_same(*_both(idx, allq, 10, exclude=ex))
    for k in (10, 45):
        bi, bs = idx.query_batch(allq, k)
        for j, q in enumerate(allq):
            i, s = idx.query(q, k)
            np.testing.assert_array_equal(i, bi[j][: len(i)])
            np.testing.assert_array_equal(s, bs[j][: len(s)])


@needs_numba
def test_compiled_engine_on_a_loaded_index(kern, tmp_path):
    """A saved and re-loaded index (read-only, memory-mapped sections) runs the same
    compiled code and answers as before saving."""
    base, qs = _broad(n=3000, seed=5)
    idx = open_index("lsh", base.shape[1], model_id="m", seed=1, exact_fallback=False)
    idx.add(np.arange(len(base)), base)
    idx.build()
    want = idx.query_batch(qs, 10)
    idx.save(tmp_path / "x.idx")
    got = type(idx).load(tmp_path / "x.idx").query_batch(qs, 10)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def _run(code: str, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300
    )


def test_import_imgfinder_does_not_import_numba():
    r = _run(
        "import sys, imgfinder, imgfinder.core.index, imgfinder.core.index.lsh;"
        "print('numba' in sys.modules)"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_numba_off_forces_numpy(monkeypatch):
    monkeypatch.setenv("IMGFINDER_NUMBA", "0")
    assert not nb.enabled()
    assert nb.get(wait=True) is None


@needs_numba
def test_cache_folder_is_writable_when_the_package_is_not(tmp_path):
    """numba's kernels cache goes under the app's cache folder (never next to the package,
    read-only in a system install); an unusable NUMBA_CACHE_DIR (here: below a file, which
    even root cannot create) falls back to the next writable folder and the kernels load."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = (
        "from imgfinder.core.index import _numba as nb;"
        "m = nb.get(wait=True); import numba;"
        "print(m is not None, numba.config.CACHE_DIR)"
    )
    data = tmp_path / "data"
    r = _run(code, IMGFINDER_DATA_DIR=str(data), NUMBA_CACHE_DIR=str(blocker / "sub"))
    assert r.returncode == 0, r.stderr
    ok, where = r.stdout.split()
    assert ok == "True"
    assert Path(where).is_relative_to(data), where
    assert any(Path(where).rglob("*.nbi")), "no cached kernels written"


def test_calibration_models_the_engine_that_answers(monkeypatch):
    """The cost table calibration uses follows the engine: compiled unless the index is
    forced to numpy, IMGFINDER_NUMBA=0 is set or numba is missing."""
    idx = LSHIndex(32)
    assert idx.tuning().compiled == nb.enabled()
    idx._force_numpy = True
    assert not idx.tuning().compiled
    idx._force_numpy = False
    monkeypatch.setenv("IMGFINDER_NUMBA", "0")
    assert not idx.tuning().compiled


def _saved_index(tmp_path, n: int, dim: int, seed: int):
    """A small LSH index with fixed search settings, built on Gaussian rows drawn with `seed`
    and saved as tmp_path / "x.idx" (for tests that load it in a fresh process)."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    idx = LSHIndex(dim, seed=0, exact_fallback=False, probes=16, rerank=40)
    idx.add(np.arange(n), x)
    idx.build()
    idx.save(tmp_path / "x.idx")
    return idx, x


def test_single_queries_do_not_import_numba_until_loaded(tmp_path):
    """A short process's single query on a saved index (`imgfinder search`) runs the numpy
    engine and never imports numba; a batch large enough loads the kernels (a small one
    does not), and single queries use them from then on, with the same results."""
    idx, x = _saved_index(tmp_path, 3000, 32, seed=0)
    np.save(tmp_path / "x.npy", x[:4])
    code = (
        "import sys, numpy as np\n"
        "from imgfinder.core.index import LSHIndex\n"
        "from imgfinder.core.index import _numba as nb\n"
        f"idx = LSHIndex.load({str(tmp_path / 'x.idx')!r})\n"
        "idx._COMPILED_WORK = 4 * 3000  # this batch of 4 loads the kernels\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "a = idx.query(x[0], 5)\n"
        "idx.query_batch(x[:3], 5)  # below _COMPILED_WORK: numpy\n"
        "print('numba' in sys.modules, idx._engine(1) is None)\n"
        "b = idx.query_batch(x, 5)\n"
        "print(nb.enabled() == ('numba' in sys.modules), (idx._engine(1) is None) != nb.enabled())\n"
        "c = idx.query(x[0], 5)\n"
        "print(np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "True", "True", "True"]


@needs_numba
def test_compiled_engine_is_safe_across_threads(kern):
    """Two threads querying one index at once (the duplicate scan's k-NN threads; the
    kernels release the GIL) get what one thread gets: each has its own scratch."""
    from concurrent.futures import ThreadPoolExecutor

    base, qs = _broad(n=4000, nq=80, seed=13)
    idx = LSHIndex(base.shape[1], seed=3, exact_fallback=False)
    idx.add(np.arange(len(base)), base)
    idx.build()
    want = idx.query_batch(qs, 10)
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda lo: idx.query_batch(qs[lo : lo + 20], 10), range(0, 80, 20)))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), want[0])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), want[1])


def test_a_broken_numba_falls_back_to_numpy(tmp_path):
    """numba failing to import (here: blocked) leaves the numpy engine answering, with the
    same rows and scores as an index that never tried."""
    idx, x = _saved_index(tmp_path, 2000, 16, seed=1)
    idx._force_numpy = True
    want = idx.query_batch(x[:8], 5)
    np.save(tmp_path / "want.npy", np.concatenate([want[0], want[1]], axis=1))
    np.save(tmp_path / "q.npy", x[:8])
    code = (
        "import sys, numpy as np\n"
        "sys.modules['numba'] = None  # import numba -> ImportError\n"
        "from imgfinder.core.index import LSHIndex\n"
        "from imgfinder.core.index import _numba as nb\n"
        f"idx = LSHIndex.load({str(tmp_path / 'x.idx')!r})\n"
        "idx._COMPILED_WORK = 0\n"
        f"want = np.load({str(tmp_path / 'want.npy')!r})\n"
        f"i, s = idx.query_batch(np.load({str(tmp_path / 'q.npy')!r}), 5)\n"
        "print(nb.get(wait=True) is None, nb.enabled())\n"
        "print(np.array_equal(np.concatenate([i, s], axis=1), want))\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False", "True"], r.stdout + r.stderr

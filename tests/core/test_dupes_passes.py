"""The scan's feature k-NN pass (dupes/pairs.py): chunks queried in parallel threads give the
same pairs as one thread, with progress and a cancel check per wave of chunks."""

from __future__ import annotations

import threading

import numpy as np

from imgfinder.core import imagesig as signature
from imgfinder.core.dupes import pairs as P
from imgfinder.core.index import ExactIndex, LSHIndex
from imgfinder.core.types import run


def _library(n: int = 400, dim: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)) * 2
    x = centres[rng.integers(0, 20, n)] + rng.standard_normal((n, dim))
    x = np.maximum(x, 0) + 0.1  # ReLU-like, with a shared offset
    sigs = rng.standard_normal((n, signature.SIG_DIM)).astype(np.float32)
    return x.astype(np.float32), sigs / np.linalg.norm(sigs, axis=1, keepdims=True)


def _index(kind, x):
    ids = np.arange(1, len(x) + 1, dtype=np.int64)
    idx = (
        ExactIndex(x.shape[1], model_id="t")
        if kind == "exact"
        else LSHIndex(x.shape[1], model_id="t", seed=0, exact_fallback=False)  # the LSH engine
    )
    idx.add(ids, x)
    idx.build()
    return idx, ids


def _scan(index, ids, sigs, workers, cancel=None, progress=None):
    n = len(ids)
    gen = P.find_pairs(
        index,
        ids,
        [f"/p/{i}.jpg" for i in range(n)],
        [f"{i:032x}" for i in range(n)],
        sigs,
        knn_threads=workers,
        cancel=cancel,
    )
    return run(gen, progress)


def test_parallel_chunks_give_the_same_pairs(monkeypatch):
    monkeypatch.setattr(P, "CHUNK", 37)  # many chunks, a ragged last wave
    x, sigs = _library()
    for kind in ("exact", "lsh"):
        index, ids = _index(kind, x)
        one = _scan(index, ids, sigs, 1)
        three = _scan(index, ids, sigs, 3)
        assert len(one) > len(ids)  # every photo has feature pairs
        for name in ("a", "b", "exact", "sig", "orientation"):
            np.testing.assert_array_equal(getattr(one, name), getattr(three, name), name)
        np.testing.assert_array_equal(one.similar, three.similar)


def test_progress_per_wave_and_cancel(monkeypatch):
    monkeypatch.setattr(P, "CHUNK", 50)
    x, sigs = _library()
    index, ids = _index("exact", x)
    seen = []
    _scan(index, ids, sigs, 2, progress=lambda p: seen.append((p.stage, p.done)))
    feature = [d for s, d in seen if s == "features"]
    assert feature == [100, 200, 300, 400]  # two chunks of 50 per wave
    cancel = threading.Event()

    def stop_after_first(p):
        if p.stage == "features":
            cancel.set()

    assert _scan(index, ids, sigs, 2, cancel=cancel, progress=stop_after_first) is None

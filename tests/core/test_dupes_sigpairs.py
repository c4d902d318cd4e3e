"""The signature self-join of large scans (dupes/sigpairs.py): every pair above the gate, in
any of the 8 orientations, against an exact all-pairs scan."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from imgfinder.core import imagesig as signature
from imgfinder.core.dupes import pairs as P
from imgfinder.core.dupes import sigpairs

K = signature.COEFFS


def _drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _photo_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """DCT-signature-like rows: energy falling with frequency, DC removed, unit norm."""
    u = np.arange(K)
    decay = 1.0 / (1.0 + u[:, None] + u[None, :]) ** 1.2
    s = rng.standard_normal((n, K, K)) * decay
    s[:, 0, 0] = 0
    s = s.reshape(n, -1)
    return (s / np.linalg.norm(s, axis=1, keepdims=True)).astype(np.float32)


def _dct_orient(c: np.ndarray, o: int) -> np.ndarray:
    """DCT coefficients of the pixels turned by imagesig.orient(., o), computed the long way."""
    d = signature._dct_matrix(signature.GRID, K)
    pinv = np.linalg.pinv(d)  # pixels whose low frequencies are c (the rest zero)
    pixels = pinv @ c.reshape(K, K) @ pinv.T
    return (d @ signature.orient(pixels, o) @ d.T).ravel()


def _library(n: int, copies: int, seed: int = 0):
    """n photo-like signatures and `copies` re-oriented, noisy copies of some of them, with
    similarities from about 0.8 to 1."""
    rng = np.random.default_rng(seed)
    base = _photo_like(n, rng)
    src = rng.choice(n, copies, replace=False)
    noise = rng.uniform(0.0, 0.07, copies)[:, None]
    cp = np.stack([_dct_orient(base[i], int(rng.integers(0, 8))) for i in src])
    cp = cp + rng.standard_normal(cp.shape) * noise
    cp = (cp / np.linalg.norm(cp, axis=1, keepdims=True)).astype(np.float32)
    return np.concatenate([base, cp])


def _exact_pairs(sigs: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Every pair with best-orientation similarity >= threshold, by brute force: one product
    of the rows with all 8 orientations of all rows (turned the long way, through pixels)."""
    n = len(sigs)
    turned = np.stack([np.stack([_dct_orient(r, o) for r in sigs]) for o in range(8)])
    best = np.max(np.einsum("id,ojd->oij", sigs, turned.astype(np.float32)), axis=0)
    a, b = np.nonzero(np.triu(best >= threshold - 1e-5, 1))
    return set(zip(a.tolist(), b.tolist())) if n else set()


def test_oriented_planes_project_every_orientation_of_the_pixels():
    rng = np.random.default_rng(1)
    x = _photo_like(6, rng)
    planes = rng.standard_normal((signature.SIG_DIM, 5)).astype(np.float32)
    got = (x @ sigpairs.oriented_planes(planes)).reshape(6, 8, 5)
    for o in range(8):
        want = np.stack([_dct_orient(row, o) for row in x]) @ planes
        np.testing.assert_allclose(got[:, o], want, atol=1e-4)


def test_finds_the_exact_pairs_above_the_threshold():
    sigs = _library(2500, 300)
    truth = _exact_pairs(sigs, P.SIG_GATE)
    assert len(truth) >= 150  # most planted copies (some fall below the gate) and natural pairs
    a, b, sim = _drain(sigpairs.threshold_pairs(sigs, P.SIG_GATE, 16))
    got = set(zip(a.tolist(), b.tolist()))
    assert np.all(a < b)
    assert got <= truth  # nothing below the threshold, every reported score is exact
    assert np.all(sim >= P.SIG_GATE)
    want, _ = signature.similarity(sigs[a], sigs[b])
    np.testing.assert_allclose(sim, want, atol=1e-6)
    assert len(got) / len(truth) >= 0.97


def test_at_most_k_pairs_per_photo_unless_the_partner_keeps_it():
    rng = np.random.default_rng(2)
    base = _photo_like(400, rng)
    family = base[0] + 0.01 * rng.standard_normal((30, signature.SIG_DIM))  # 31 near-copies
    sigs = np.concatenate([base, family / np.linalg.norm(family, axis=1, keepdims=True)])
    sigs = sigs.astype(np.float32)
    a, b, sim = _drain(sigpairs.threshold_pairs(sigs, P.SIG_GATE, 4))
    members = {0, *range(400, 430)}
    assert {*a.tolist(), *b.tolist()} <= members
    for p in members:  # each photo keeps its 4 most similar; more only as the partner's top 4
        mine = np.flatnonzero((a == p) | (b == p))
        assert len(mine) >= 4
        others = np.where(a[mine] == p, b[mine], a[mine])
        for j, q in zip(mine, others):
            q_pairs = sim[(a == q) | (b == q)]
            p_pairs = sim[(a == p) | (b == p)]
            assert sim[j] >= np.sort(p_pairs)[-4] or sim[j] >= np.sort(q_pairs)[-4]


def test_zero_signatures_take_no_part_and_cancel_stops():
    sigs = _library(300, 40)
    sigs[:10] = 0
    a, b, _ = _drain(sigpairs.threshold_pairs(sigs, P.SIG_GATE, 16))
    assert len(a) and min(a.min(), b.min()) >= 10
    cancel = threading.Event()
    cancel.set()
    assert _drain(sigpairs.threshold_pairs(sigs, P.SIG_GATE, 16, cancel=cancel)) is None
    assert _drain(sigpairs.threshold_pairs(sigs[:1], P.SIG_GATE, 16))[0].size == 0
    with pytest.raises(ValueError):
        _drain(sigpairs.threshold_pairs(sigs, P.SIG_GATE, 16, key_bits=40))


def test_find_pairs_uses_the_join_beyond_the_exact_limit(monkeypatch):
    """A large library's scan (the limit lowered) finds rotated copies by signature alone."""
    sigs = _library(600, 60, seed=3)
    truth = _exact_pairs(sigs, P.SIG_GATE)
    monkeypatch.setattr(P, "EXACT_SIG_LIMIT", 100)
    n = len(sigs)
    pl = _drain(
        P.find_pairs(
            None,
            np.arange(1, n + 1, dtype=np.int64),
            [f"/p/{i}.jpg" for i in range(n)],
            [f"{i:032x}" for i in range(n)],
            sigs,
        )
    )
    got = {(int(x), int(y)) for x, y in zip(pl.a, pl.b)}
    assert got <= truth and len(got) / len(truth) >= 0.97
    assert np.all(pl.sig >= P.SIG_GATE)


def test_a_new_candidate_search_invalidates_cached_scans(monkeypatch):
    from imgfinder.core.dupes import cache

    args = ("m", np.array([1, 2]), ["/a", "/b"], ["x", "y"], [], {"verify": True})
    before = cache.fingerprint(*args)
    monkeypatch.setattr(P, "SEARCH_VERSION", P.SEARCH_VERSION + 1)
    assert cache.fingerprint(*args) != before


def test_sort_keys_are_the_code_bits_of_each_table():
    rng = np.random.default_rng(4)
    x = _photo_like(20, rng)
    planes = rng.standard_normal((signature.SIG_DIM, 7 * 20)).astype(np.float32)  # 3 words
    codes = sigpairs._codes(x, planes)
    bits = (x @ sigpairs.oriented_planes(planes)).reshape(160, 140) > 0
    for t in range(7):  # fields of 20 bits, two of them across a word boundary
        want = (bits[:, 20 * t : 20 * t + 20] * (1 << np.arange(20))).sum(axis=1)
        np.testing.assert_array_equal(sigpairs._key(codes, t, 20), want.astype(np.uint64))

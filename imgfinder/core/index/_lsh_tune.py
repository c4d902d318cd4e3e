"""Data-driven LSH choices: plane shaping (build) and probes / re-rank depth (calibration).

Calibration: stored rows serve as queries against the exact 10-NN of the rest. For each probe budget in
a doubling grid, the rank of every true neighbour in the Hamming order of the candidates is
recorded; recall as a function of re-rank depth R then follows without re-running queries.
Among the (probes, R) pairs that reach the target, the one with the lowest modelled cost is
chosen. Cost model constants (seconds) were measured on the 2-core reference box with
numpy 2.x at 100k x 4096 and 1M x 512; only their ratios matter.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from ._kernels import hamming_rows

if TYPE_CHECKING:
    from .lsh import LSHIndex

log = logging.getLogger(__name__)

_COST_PROBE = 30e-9  # per probed bucket (offset lookups, ragged gather set-up)
_COST_CAND = 50e-9  # per candidate (gather, de-duplicate, Hamming over B bits)
_COST_ROW = 0.4e-6  # per re-ranked row: a random memory access before any arithmetic
_COST_ELEM = 0.35e-9  # per re-ranked float16 element (gather + widen + dot)
CALIB_K = 10


def shaped_planes(index: LSHIndex, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-shape Gaussian plane normals to N(0, C**0.5), C the covariance of centred data.

    CNN features have low intrinsic dimension; an isotropic normal spends most of its
    length on directions where the data barely varies, so its bit is mostly noise.
    Weighting each principal direction by variance**0.25 (top 64 from a randomized SVD
    of a sample; the rest share the mean residual variance) keeps planes random but
    aims them where the data spreads. Measured (full Hamming ranking, 256 bits, recall
    0.95): re-rank depth 75 -> 45 at 1M x 512 and at 100k x 4096. Exponents 0.5 and 1
    were worse (0.5 slightly, 1 much: it ignores the many mid-variance directions).
    """
    n, d = index._n_rows, index._dim
    n_pca = min(n, max(2048, (1 << 25) // d))
    rows = np.sort(rng.choice(n, n_pca, replace=False))
    xs = index._unit_rows(rows) - index._mean
    k = min(64, d, n_pca - 1)
    omega = rng.standard_normal((d, min(d, k + 16)), dtype=np.float32)
    q, _ = np.linalg.qr(xs @ omega)
    _, sv, vt = np.linalg.svd(q.T @ xs, full_matrices=False)
    lam = (sv[:k] ** 2 / n_pca).astype(np.float64)
    total = float(np.einsum("ij,ij->", xs, xs, dtype=np.float64)) / n_pca
    lam_res = max((total - lam.sum()) / max(d - k, 1), 1e-12 * max(total, 1e-30))
    lam = np.maximum(lam, lam_res)
    vk = vt[:k].astype(np.float32)
    gk = g @ vk.T  # components of each normal inside the top-k subspace
    w = (lam**0.25 / lam_res**0.25).astype(np.float32)
    return ((gk * w) @ vk + (g - gk @ vk)).astype(np.float32)


def calibrate(index: LSHIndex) -> tuple[int, int]:
    """Return (probes, re-rank depth per 10 results) for a built `index`."""
    p = index.params
    if p["probes"] is not None and p["rerank"] is not None:
        return int(p["probes"]), int(p["rerank"])
    live = index._live
    if live <= 4 * CALIB_K:  # tiny: probe the home buckets, re-rank whatever they hold
        return int(p["probes"] or index._L), int(p["rerank"] or max(4 * CALIB_K, live))
    sample, qs, truth = _ground_truth(index, min(int(p["calib_queries"]), live))
    n_q = len(sample)
    projs = index._project(qs)
    codes = index._pack(projs)
    grid = [int(p["probes"])] if p["probes"] else _doubling(index._L, index._max_probes)
    target = float(p["target_recall"])
    stamp = np.zeros(index._n_rows, dtype=np.int32)
    best = None
    deepest = 0.0
    for n_probes in grid:
        positions, n_cand = [], []
        for j in range(n_q):
            cand = index._candidates(projs[j], codes[j], n_probes, exclude=int(sample[j]))
            n_cand.append(len(cand))
            positions.append(_hamming_positions(index._codes.view, codes[j], cand, truth[j], stamp))
        pos = np.stack(positions)  # (n_q, k) expected Hamming ranks of the true neighbours
        finite = pos[np.isfinite(pos)]
        deepest = max(deepest, float(finite.max()) + 1 if finite.size else 0.0)
        gather_cost = _COST_PROBE * n_probes + _COST_CAND * float(np.mean(n_cand))
        if best is not None and gather_cost > best[0]:
            break  # more probes only cost more from here on
        r_need = _depth_for_recall(pos, target)
        if p["rerank"]:
            r = int(p["rerank"])
            if r_need > r:
                continue
        elif np.isfinite(r_need):
            r = max(CALIB_K, int(math.ceil(r_need)))
        else:
            continue  # too many neighbours unreachable with this many probes
        cost = gather_cost + (_COST_ROW + _COST_ELEM * index._dim) * r
        if best is None or cost < best[0]:
            best = (cost, n_probes, r)
    if best is None:  # target out of reach: probe widest, re-rank everything it finds
        log.warning("lsh calibration could not reach recall %.3f; probing widest", target)
        return grid[-1], int(p["rerank"] or max(4 * CALIB_K, math.ceil(deepest)))
    return best[1], best[2]


def _ground_truth(index: LSHIndex, n_q: int):
    """Sample rows, their unit vectors and exact 10-NN (self excluded). The exact pass is the
    dominant calibration cost (n_q x n x dim multiply-adds), so it is cached until the index
    next changes; `tune()` for another target then takes a fraction of a second."""
    key = (index._n_rows, index._live, n_q, index._mutations)
    cached = getattr(index, "_calib_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    rng = np.random.default_rng(index.seed + 1)
    sample = np.sort(rng.choice(np.flatnonzero(index._alive.view), n_q, replace=False))
    qs = index._unit_rows(sample)
    truth, _ = index._exact_rows(qs, CALIB_K, exclude=sample)
    index._calib_cache = (key, (sample, qs, truth))
    return sample, qs, truth


def _depth_for_recall(pos: np.ndarray, target: float) -> float:
    """Smallest re-rank depth R whose recall over the calibration queries, minus 3 standard
    errors of the per-query mean (neighbours of one query are correlated, so the per-query
    spread is the honest one), still reaches `target`. inf if no finite depth does."""
    flat = np.unique(pos[np.isfinite(pos)])
    if len(flat) == 0:
        return math.inf
    nq = len(pos)
    lo, hi = 0, len(flat) - 1
    best = math.inf
    while lo <= hi:  # recall is monotone in R: binary search over the candidate depths
        mid = (lo + hi) // 2
        r = flat[mid] + 1
        per_q = (pos < r).mean(axis=1)
        if per_q.mean() - 3.0 * per_q.std() / math.sqrt(nq) >= target:
            best, hi = r, mid - 1
        else:
            lo = mid + 1
    return best


def _doubling(lo: int, hi: int) -> list[int]:
    out = [lo]
    while out[-1] < hi:
        out.append(min(hi, out[-1] * 2))
    return out


def _hamming_positions(codes, qcode, cand, truth_rows, stamp: np.ndarray) -> np.ndarray:
    """Expected rank (0-based, ties split evenly) of each true neighbour in the Hamming order
    of the candidates; inf for neighbours that are not candidates. `stamp` is a scratch int32
    array with one slot per row."""
    out = np.full(len(truth_rows), np.inf)
    if len(cand) == 0:
        return out
    ham = hamming_rows(codes, cand, qcode)
    counts = np.bincount(ham, minlength=64 * codes.shape[1] + 1)
    below = np.cumsum(counts) - counts
    stamp[cand] = np.arange(len(cand), dtype=np.int32)
    truth_rows = np.asarray(truth_rows)
    ok = truth_rows >= 0
    at = stamp[truth_rows[ok]]
    at[(at >= len(cand)) | (at < 0)] = 0
    hit = cand[at] == truth_rows[ok]
    h = ham[at[hit]]
    idx = np.flatnonzero(ok)[hit]
    out[idx] = below[h] + (counts[h] - 1) / 2.0
    return out

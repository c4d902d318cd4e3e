"""Numpy kernels shared by the index backends: fast float16 widening, top-k, Hamming, brute force."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

# float16 rows are widened by bit manipulation instead of ndarray.astype: numpy's half->float
# cast is a branchy scalar loop here (1.5-4.5 ns/element depending on how many zeros the rows
# hold, i.e. 1.3-3.6 ms for 200 rows of 4096), while sign-extend + shift + mask is three
# vectorised passes (~0.3 ns/element). The result is the exact float32 value times 2**-112, so
# callers either scale the other operand by F16_SCALE or multiply once afterwards.
F16_SCALE = np.float32(2.0**112)
_F16_MASK = np.int32(-0x70002000)  # 0x8FFFE000: sign bit + the 15 exponent/mantissa bits

HAS_BITWISE_COUNT = hasattr(np, "bitwise_count")
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def matvec(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """m @ v without OpenBLAS's threaded gemv.

    With both cores busy, a threaded gemv waits for its helper thread to be scheduled:
    measured 4-8 ms instead of 0.03 ms for 256 x 4096 on the 2-core box while other jobs ran.
    np.vecdot runs one (unthreaded) dot per row: ~0.07 ms, never stalls. numpy < 2 has no
    vecdot; einsum is the unthreaded fallback there.
    """
    if _HAS_VECDOT:
        return np.vecdot(m, v)
    return np.einsum("ij,j->i", m, v)


_HAS_VECDOT = hasattr(np, "vecdot")


def widen_f16(src: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Return float32 rows equal to `src` (float16) times 2**-112; `out` is an int32 scratch.

    Exact for every finite float16, denormals and signed zeros included (the scaled value of
    a float16 denormal is a float32 denormal). Inf/NaN never reach here: the indexes reject
    non-finite vectors on add.
    """
    if out is None:
        out = np.empty(src.shape, dtype=np.int32)
    np.copyto(out, src.view(np.int16))  # sign-extends: bit 15 lands in bits 15..31
    np.left_shift(out, 13, out=out)
    np.bitwise_and(out, _F16_MASK, out=out)
    return out.view(np.float32)


def f16_to_f32(src: np.ndarray) -> np.ndarray:
    """Exact float16 -> float32 conversion, several times faster than ndarray.astype."""
    src = np.ascontiguousarray(src, dtype=np.float16)
    f = widen_f16(src)
    f *= F16_SCALE
    return f


class Scratch(threading.local):
    """Per-thread growable buffers, so concurrent queries never share scratch memory.

    Fresh multi-megabyte arrays cost page faults on every query (measured ~0.3-0.6 ms for a
    3 MB buffer), more than the arithmetic they hold; reusing them keeps latency flat.
    """

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        need = int(np.prod(shape))
        buf = self.__dict__.get(name)
        if buf is None or buf.size < need or buf.dtype != np.dtype(dtype):
            buf = np.empty(need + need // 4 + 64, dtype=dtype)  # headroom: rows get added
            self.__dict__[name] = buf
        return buf[:need].reshape(shape)

    def arange(self, n: int) -> np.ndarray:
        """A read-only int32 0..n-1 (cached; do not modify)."""
        r = self.__dict__.get("_arange")
        if r is None or len(r) < n:
            r = np.arange(n + n // 4 + 64, dtype=np.int32)
            self.__dict__["_arange"] = r
        return r[:n]


def hamming_rows(codes: np.ndarray, rows: np.ndarray, qcode: np.ndarray) -> np.ndarray:
    """Hamming distances (uint16) between codes[rows] ((n, W) uint64) and one code (W,).

    Row-major codes cost one cache line per candidate (32 bytes at 256 bits); a word-major
    layout was as fast with warm caches but takes W misses per candidate on a cold query.
    The per-word counts (<= 64) are summed pairwise in place of a slow short-axis reduce.
    """
    x = np.take(codes, rows, axis=0)
    x ^= qcode
    return _row_popcount(x)


def _row_popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per row of (n, W) uint64 words, as uint16."""
    if not HAS_BITWISE_COUNT:
        return _POPCOUNT8[x.view(np.uint8)].sum(axis=1, dtype=np.uint16)
    c = np.bitwise_count(x)  # (n, W) uint8
    if c.shape[1] % 2:
        return c.sum(axis=1, dtype=np.uint16)
    v = c.view(np.uint16)  # two counts per element
    s = (v & np.uint16(0xFF)) + (v >> np.uint16(8))
    while s.shape[1] > 1:
        half = s.shape[1] // 2
        if s.shape[1] % 2:
            return s.sum(axis=1, dtype=np.uint16)
        s = s[:, :half] + s[:, half:]
    return s[:, 0]


def hamming_many(
    codes: np.ndarray,
    rows: np.ndarray,
    qcodes: np.ndarray,
    per_query: np.ndarray,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """Hamming distances (uint16) of codes[rows] to their queries' codes, for the entries
    of many queries at once: the first per_query[0] rows belong to qcodes[0], and so on.
    `scratch`: a reusable (>= len(rows), W) uint64 buffer for the gathered codes; rows must
    then be in range (mode="clip": with an `out`, the default mode gathers into a temporary
    and copies it, measured 2x slower)."""
    if scratch is None:
        x = np.take(codes, rows, axis=0)
    else:
        x = np.take(codes, rows, axis=0, out=scratch[: len(rows)], mode="clip")
    x ^= qcodes if len(qcodes) == 1 else np.repeat(qcodes, per_query, axis=0)
    return _row_popcount(x)


def popcount_bits(codes: np.ndarray, nbits: int) -> np.ndarray:
    """Per-bit count of ones over packed codes (n, W) -> int64 (nbits,)."""
    if len(codes) == 0:
        return np.zeros(nbits, dtype=np.int64)
    bits = np.unpackbits(codes.view(np.uint8), axis=1, bitorder="little", count=nbits)
    return bits.sum(axis=0, dtype=np.int64)


def topk_desc(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (ties broken by position, stable)."""
    n = scores.shape[-1]
    if k >= n:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def pad_results(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad one query's results to length k with -1 / -inf (for query_batch)."""
    out_i = np.full(k, -1, dtype=np.int64)
    out_s = np.full(k, -np.inf, dtype=np.float32)
    out_i[: len(ids)] = ids
    out_s[: len(scores)] = scores
    return out_i, out_s


def _scores(rows: np.ndarray, queries: np.ndarray, per_query: bool = False) -> np.ndarray:
    """queries @ rows.T; a single query goes through the unthreaded `matvec` (threaded gemv
    stalls on a busy machine: 1.3 s instead of 0.13 s per exact query at 100k x 4096).
    `per_query`: every query through `matvec`, so its scores do not depend on the batch."""
    if len(queries) == 1:
        return matvec(rows, queries[0])[None, :]
    if per_query:
        out = np.empty((len(queries), len(rows)), np.float32)
        for j, q in enumerate(queries):
            out[j] = matvec(rows, q)
        return out
    return queries @ rows.T


def _merge_above(best_s, best_r, s, lo):
    """Merge a score block into full (Q, k) top lists, touching only scores that beat the
    current k-th best (after the first blocks almost none do, so this is one compare pass
    instead of an argpartition of the whole block)."""
    nq, k = best_s.shape
    kth = best_s.min(axis=1)
    qi, ci = np.nonzero(s > kth[:, None])
    if len(qi) == 0:
        return best_s, best_r
    all_q = np.concatenate([np.repeat(np.arange(nq), k), qi])
    all_s = np.concatenate([best_s.reshape(-1), s[qi, ci]])
    all_r = np.concatenate([best_r.reshape(-1), ci.astype(np.int64) + lo])
    order = np.lexsort((-all_s, all_q))
    all_q, all_s, all_r = all_q[order], all_s[order], all_r[order]
    starts = np.searchsorted(all_q, np.arange(nq))
    rank = np.arange(len(all_q)) - starts[all_q]
    keep = rank < k
    return all_s[keep].reshape(nq, k), all_r[keep].reshape(nq, k)


def brute_force_knn(
    n_rows: int,
    fetch: Callable[[int, int], np.ndarray],
    queries: np.ndarray,
    k: int,
    *,
    alive: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    chunk_elems: int = 1 << 20,
    row_scale: np.ndarray | str | None = None,
    per_query: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows by cosine for each query, streaming rows in bounded chunks.

    `fetch(lo, hi)` returns rows lo..hi as float16 (or float32); `queries` are float32 unit
    vectors (Q, D). `alive` masks out removed rows, `exclude[q]` is a row hidden from query q
    (the query itself during calibration). `row_scale` multiplies row scores (stored 1/norm
    per row) or is "normalise" to compute row norms on the fly. `per_query`: score each
    query with its own dot products (bit-identical alone or in a batch; no GEMM). Returns (rows int64 (Q,k'), scores float32 (Q,k'))
    with k' = min(k, live rows), best first. Memory is O(chunk + Q*k).
    """
    nq, dim = queries.shape
    chunk = max(1, chunk_elems // max(dim, 1))
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_r = np.zeros((nq, 0), dtype=np.int64)
    qs = (queries * F16_SCALE).astype(np.float32)
    scratch = np.empty((min(chunk, max(n_rows, 1)), dim), dtype=np.int32)
    for lo in range(0, n_rows, chunk):
        hi = min(n_rows, lo + chunk)
        block = fetch(lo, hi)
        if block.dtype == np.float16:
            rows = widen_f16(np.ascontiguousarray(block), scratch[: hi - lo])
            s = _scores(rows, qs, per_query)
        else:
            rows = np.asarray(block, dtype=np.float32)
            s = _scores(rows, queries, per_query)
        if isinstance(row_scale, str):
            # ufuncs release the GIL (einsum held it ~60 ms per block: a GUI stall)
            norms = np.sqrt(np.square(rows, dtype=np.float64).sum(axis=1))
            if block.dtype == np.float16:
                norms *= float(F16_SCALE)
            norms[norms == 0] = 1.0
            s = s / norms.astype(np.float32)
        elif row_scale is not None:
            s *= row_scale[lo:hi]
        if alive is not None:
            s[:, ~alive[lo:hi]] = -np.inf
        if exclude is not None:
            hit = (exclude >= lo) & (exclude < hi)
            s[np.flatnonzero(hit), exclude[hit] - lo] = -np.inf
        if best_s.shape[1] == k:
            best_s, best_r = _merge_above(best_s, best_r, s, lo)
            continue
        kk = min(k, hi - lo)
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, axis=1)], axis=1)
        cand_r = np.concatenate([best_r, part + lo], axis=1)
        keep = min(k, cand_s.shape[1])
        sel = np.argpartition(-cand_s, keep - 1, axis=1)[:, :keep]
        best_s = np.take_along_axis(cand_s, sel, axis=1)
        best_r = np.take_along_axis(cand_r, sel, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    best_s = np.take_along_axis(best_s, order, axis=1)
    best_r = np.take_along_axis(best_r, order, axis=1)
    valid = np.isfinite(best_s).all(axis=0)  # columns that are real for every query
    if not valid.all():
        # Fewer live rows than k: trim to the common valid width, keep padding semantics.
        width = int(np.isfinite(best_s).sum(axis=1).max(initial=0))
        best_s, best_r = best_s[:, :width], best_r[:, :width]
        best_r[~np.isfinite(best_s)] = -1
    return best_r, best_s.astype(np.float32)


_TO_F16_SCALE = np.float32(2.0**-112)


def f32_to_f16(src: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """float32 -> float16 (round to nearest even) for |values| <= 1, e.g. unit-vector rows.

    numpy's cast is a scalar loop here (~5.5 ns/element); this is ~2 ns. Scaling by 2**-112
    (exact for the normal float16 range) moves the float16 exponent and mantissa to bits
    13..27 of the float32, where an integer add does the rounding; float16 denormals become
    float32 denormals first, so in that range a tie can round twice (a 1-ulp difference in
    values below 6e-5, immaterial for cosine scores).
    """
    src = np.ascontiguousarray(src, dtype=np.float32)
    flat = src.reshape(-1)
    out = np.empty(flat.size, dtype=np.uint16)
    for lo in range(0, flat.size, chunk):
        v = flat[lo : lo + chunk]
        a = np.abs(v)
        a *= _TO_F16_SCALE
        u = a.view(np.uint32)
        odd = u >> np.uint32(13)
        odd &= np.uint32(1)
        u += odd
        u += np.uint32(0xFFF)
        u >>= np.uint32(13)
        sign = v.view(np.uint32) >> np.uint32(16)
        sign &= np.uint32(0x8000)
        u |= sign
        out[lo : lo + chunk] = u
    return out.view(np.float16).reshape(src.shape)


def f16_bad_rows(x: np.ndarray) -> np.ndarray:
    """Rows of a float16 matrix holding Inf or NaN (exponent bits all set)."""
    u = x.view(np.uint16)
    return ((u & np.uint16(0x7C00)) == np.uint16(0x7C00)).any(axis=1)

"""Signature pairs of a large library: every pair whose best-orientation DCT signature
similarity reaches a threshold, by a sorted-window LSH self-join (no per-photo queries).

The scan needs far less than k-NN here: a signature pair is kept only when its
best-orientation similarity (`imagesig.similarity`) reaches SIG_GATE, and copies sit far
closer than typical neighbours. So instead of querying an index once per photo, this is one
self-join over the whole library:

1. Every signature is written in its 8 dihedral orientations (mirrors negate odd
   frequencies, a transpose swaps the axes: exact signed permutations of the coefficients)
   and hashed with the same seeded random hyperplanes: SimHash sign bits, `tables` fields of
   `key_bits` bits each. The signed, oriented form keeps the contrast that the
   orientation-invariant absolute values (`imagesig.invariant`) lose: unrelated photos sit
   near 90 degrees, a copy within a few degrees of its original.
2. Per table, all 8N entries are sorted by their key (ties in random order) and every entry
   is paired with the next `window` entries (of other photos). Close vectors share long key
   prefixes, so they land next to each other; a dense region (many similar photos) only
   makes the neighbourhood in key order tighter, never the candidate list longer: the cost
   is 8N * tables * window candidates whatever the data. A pair of photos meets in 8 entry
   pairs per relative orientation (each photo in each orientation), each hashed apart, so
   one table gives it several chances.
3. Candidates are filtered by the Hamming distance between their full codes (all tables'
   bits): the fraction of differing bits estimates the angle, and a pair at the threshold
   passes with a margin of `ham_sigmas` standard deviations (first on the first 64 bits
   alone with a wider margin, which drops most candidates at a fraction of the cost).
4. Survivors are de-duplicated and scored exactly (`imagesig.similarity`); those reaching the
   threshold are kept, at most `k` per photo (its k most similar; a pair stays when it is
   among either photo's k).

Deterministic for a given seed. The candidate search is approximate (like any LSH): recall
against an exact all-pairs scan is checked in tests/core/test_dupes_sigpairs.py, and
benchmarks/dupes_scan.py reports the planted copies found at 100k. Memory while it runs:
about 0.6 kB per photo at the defaults (8 entries of a 48-byte code, and one table's sort
order at a time).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Generator

import numpy as np

from imgfinder.core import imagesig as signature
from imgfinder.core.types import Progress

TABLES = 16  # sort orders (independent hash fields)
KEY_BITS = 24  # bits per sort key (the window adapts the effective prefix to the density)
WINDOW = 4  # entries on each side of a photo's orientation-0 entry in each sort order
HAM_SIGMAS = 2.0  # Hamming filter margin above the threshold's expected distance
FIRST_SIGMAS = 3.0  # ... and of its first stage, on the first 64 bits alone
BLOCK = 2048  # photos hashed per block (8 orientations each: arrays stay in cache)


def oriented_planes(planes: np.ndarray) -> np.ndarray:
    """(SIG_DIM, bits) hyperplanes -> (SIG_DIM, 8 * bits) so that x @ result, reshaped to
    (M, 8, bits), is the projection of every photo turned by each of the 8 orientations
    onto every plane: orient_o(x) . h == x . orient_o^T(h), one GEMM for all eight.

    Orientation o: bit 4 transposes, bit 1 negates the odd horizontal frequencies, bit 2
    the odd vertical ones (in that order, as `imagesig.ORIENTATIONS`); each is a signed
    permutation of the coefficients, so its transpose is the inverse: flip, then transpose."""
    k = signature.COEFFS
    h = planes.reshape(k, k, -1)
    odd = ((-1.0) ** np.arange(k)).astype(np.float32)
    out = np.empty((k * k, 8, planes.shape[1]), np.float32)
    for o in range(8):
        g = h
        if o & 1:
            g = g * odd[None, :, None]
        if o & 2:
            g = g * odd[:, None, None]
        if o & 4:
            g = g.transpose(1, 0, 2)
        out[:, o] = g.reshape(k * k, -1)
    return out.reshape(k * k, -1)


def _codes(x: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Codes ((words, 8M) uint64, word-major, bit j of the code = sign of plane j; entry
    e = 8 * photo + orientation) of every orientation of every row of x."""
    m, bits = len(x), planes.shape[1]
    words = (bits + 63) // 64
    codes = np.zeros((words, 8 * m), np.uint64)
    oriented = oriented_planes(planes)
    for lo in range(0, m, BLOCK):
        hi = min(m, lo + BLOCK)
        proj = (x[lo:hi] @ oriented).reshape(8 * (hi - lo), bits)  # photo-major entries
        packed = np.packbits(proj > 0, axis=1, bitorder="little")
        pad = np.zeros((len(packed), words * 8), np.uint8)
        pad[:, : packed.shape[1]] = packed
        codes[:, 8 * lo : 8 * hi] = pad.view(np.uint64).T
    return codes


def _key(codes: np.ndarray, t: int, key_bits: int) -> np.ndarray:
    """Table t's sort key of every entry: bits [t * key_bits, (t + 1) * key_bits) of its code
    (uint64; the code's bits are numbered from bit 0 of word 0)."""
    lo = t * key_bits
    w, shift = divmod(lo, 64)
    key = codes[w] >> np.uint64(shift)
    if shift + key_bits > 64:
        key = key | (codes[w + 1] << np.uint64(64 - shift))
    return key & np.uint64((1 << key_bits) - 1)


def threshold_pairs(
    sigs: np.ndarray,
    threshold: float,
    k: int,
    *,
    tables: int = TABLES,
    key_bits: int = KEY_BITS,
    window: int = WINDOW,
    ham_sigmas: float = HAM_SIGMAS,
    seed: int = 0,
    cancel: threading.Event | None = None,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """(a, b, similarity) with a < b (row numbers of `sigs`), every pair found whose
    best-orientation similarity is >= threshold, at most k per photo (see the module
    docstring). Zero rows (photos without a signature) take no part. None when cancelled."""
    cancel = cancel or threading.Event()
    sigs = np.asarray(sigs, np.float32)
    valid = np.flatnonzero(np.linalg.norm(sigs, axis=1) > 0)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    m = len(valid)
    if m < 2:
        return empty
    if not 1 <= key_bits <= 32 or tables < 1 or window < 1:
        raise ValueError("need tables >= 1, window >= 1 and 1 <= key_bits <= 32")
    t0 = time.perf_counter()
    x = sigs[valid] / np.linalg.norm(sigs[valid], axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    n_bits = tables * key_bits
    planes = rng.standard_normal((x.shape[1], n_bits)).astype(np.float32)
    codes = _codes(x, planes)
    yield Progress.since("candidates", 1, tables + 2, t0, "signature hashes")
    # Hamming filter: differing-bit fraction ~ angle / pi, binomial spread over n_bits
    p = math.acos(max(-1.0, min(1.0, threshold))) / math.pi
    max_ham = int(math.ceil(n_bits * p + ham_sigmas * math.sqrt(n_bits * p * (1 - p))))
    first = min(64, n_bits)
    first_ham = int(math.ceil(first * p + FIRST_SIGMAS * math.sqrt(first * p * (1 - p))))
    ents = 8 * m
    found_a, found_b = [], []
    for t in range(tables):
        if cancel.is_set():
            return None
        tie = rng.integers(0, 1 << 32, ents, dtype=np.uint64)
        order = np.argsort((_key(codes, t, key_bits) << np.uint64(32)) | tie)
        for d in range(1, window + 1):
            e1, e2 = order[:-d], order[d:]
            # first word alone, with a looser bound: drops most pairs at a fifth of the cost
            ham = np.bitwise_count(codes[0][e1] ^ codes[0][e2])
            near = np.flatnonzero(ham <= first_ham)
            e1, e2, ham = e1[near], e2[near], ham[near].astype(np.uint16)
            for word in codes[1:]:
                ham += np.bitwise_count(word[e1] ^ word[e2])
            p1, p2 = e1 >> 3, e2 >> 3
            close = (ham <= max_ham) & (p1 != p2)
            p1, p2 = p1[close], p2[close]
            found_a.append(np.minimum(p1, p2))
            found_b.append(np.maximum(p1, p2))
        yield Progress.since("candidates", t + 2, tables + 2, t0, "signature neighbours")
    a = np.concatenate(found_a)
    b = np.concatenate(found_b)
    keys_ab = np.unique(a * m + b)
    a, b = keys_ab // m, keys_ab % m
    sim = np.empty(len(a), np.float32)
    for lo in range(0, len(a), 65536):
        sl = slice(lo, lo + 65536)
        sim[sl], _ = signature.similarity(x[a[sl]], x[b[sl]])
    keep = sim >= threshold
    a, b, sim = a[keep], b[keep], sim[keep]
    keep = _top_k_either(a, b, sim, k)
    a, b, sim = a[keep], b[keep], sim[keep]
    yield Progress.since("candidates", tables + 2, tables + 2, t0, "signature neighbours")
    return valid[a], valid[b], sim


def _top_k_either(a: np.ndarray, b: np.ndarray, sim: np.ndarray, k: int) -> np.ndarray:
    """Mask of the pairs that are among the k most similar pairs of photo a or of photo b."""
    keep = np.zeros(len(a), bool)
    if len(a) == 0:
        return keep
    photo = np.concatenate([a, b])  # each pair once under each of its photos
    pair = np.concatenate([np.arange(len(a)), np.arange(len(a))])
    order = np.lexsort((-np.concatenate([sim, sim]), photo))
    s = photo[order]
    first = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    rank = np.arange(len(s)) - np.repeat(first, np.diff(np.r_[first, len(s)]))
    keep[pair[order[rank < k]]] = True
    return keep

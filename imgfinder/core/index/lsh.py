"""Random-hyperplane (SimHash) LSH for cosine search, tuned for pooled CNN features.

Pipeline for one query (numpy only, vectorised, no Python loop over candidates):

1. Centre and project: ``p = H @ q - offset`` with H a seeded Gaussian (B x dim) matrix and
   ``offset = H @ mean + median``. Centring matters because ReLU features share a large
   positive mean: un-centred hyperplanes put most of the library on one side of every plane
   and buckets swallow a large share of it. Thresholding each projection at its median over
   the data (balanced bits, as in Bi-half codes) makes every bit ~50% ones so buckets stay
   even. The single-query product avoids threaded BLAS (see `_kernels.matvec`).
2. The B sign bits are packed into B/64 uint64 words per vector (32 bytes at B=256, one cache
   line, so a cold candidate costs one memory access).
3. L hash tables, each keyed on a disjoint b-bit field of those words, stored as CSR arrays
   (rows sorted by key + 2**b + 1 offsets): a probe is two array reads, no dicts.
4. Query-directed multi-probe: per table the m = 8 least certain bits (smallest
   |margin| / sigma) may be flipped; every (table, flip set) pair is scored by the sum of
   squared normalised margins and the `probes` best pairs over all tables are visited (home
   buckets score 0 and come first).
5. Candidates are de-duplicated with a per-thread stamp array (O(C), no sort), ranked by
   Hamming distance over all B bits, and only the top R are re-ranked by exact cosine against
   the stored float16 vectors (owned or an external `source=`, see base.py).

Parameter rule (`build()`; every value can be forced by a keyword):

* ``table_bits`` b = clip(round(log2 n), 6, 21): about one row per bucket on average. Small
  buckets make each probe precise and multi-probe (up to 256 flip sets per table) reaches the
  neighbours. Measured for recall 0.95 (shaped planes, CPU ms per query on the loaded 2-core
  box): 100k x 4096 b=14 0.64 (2.1k candidates), b=16 0.64 (2.5k), b=17 0.62 (2.0k),
  b=18 0.62 (1.4k); 1M x 512 b=17 0.70 (5.6k), b=19 0.60 (4.4k), b=20 0.53 (3.1k).
* ``tables`` L = (64 // b) * (B / 64) disjoint fields: 12 tables of 17 bits at n = 100k,
  12 of 20 bits at n = 1M.
* ``bits`` B = 256. 512 bits halve the re-rank depth but double projection and Hamming cost,
  a net loss at both benchmark sizes.
* ``planes`` "shaped" (default): Gaussian normals re-shaped to the data covariance**0.5
  (`_lsh_tune.shaped_planes`); this cut the re-rank depth for recall 0.95 from ~75 to ~45
  rows and the query time at 1M x 512 from 0.81 to 0.60 ms. "gaussian" is plain SimHash.
* ``probes`` and ``rerank`` are calibrated on the data (`_lsh_tune`): stored rows are used as
  queries against their exact 10-NN; for a doubling grid of probe budgets the Hamming rank of
  every true neighbour among the candidates gives recall as a function of the re-rank depth
  R, and the cheapest (probes, R) under a measured cost model whose recall, less three
  standard errors of the per-query mean, reaches ``target_recall`` (default 0.95) is chosen. R is per
  10 results and scales with k; probes double at query time while they yield fewer than 2R
  candidates. `tune(target)` re-calibrates without re-hashing.

Incremental updates: rows added after `build()` are hashed with the current planes and kept in
a pending list that every query scans by Hamming distance; once it exceeds ~3% of the tables
they are folded in by re-bucketing the stored codes (no re-projection). Removal tombstones rows
(filtered at query time) and compacts once a quarter of the rows are dead.

Drift: per-bit ones counts over live rows are maintained. When the distribution moves away
from the build-time mean, bits lose balance and the bucket mass a query sees grows by
``prod(2 * (p**2 + (1-p)**2))`` over a table's bits (measured, not assumed). When that
inflation exceeds ``rebuild_inflation`` (default 2.0), or the library has doubled or halved
since the build, `needs_rebuild` turns True (with ``auto_rebuild=True``, `add` rebuilds).
`drift()` also reports how far the mean of the rows added since build lies from the build
mean, in units of the build data's RMS radius.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from ...errors import IndexStateError
from ._kernels import (
    F16_SCALE,
    Scratch,
    hamming_many,
    hamming_rows,
    matvec,
    popcount_bits,
    widen_f16,
)
from ._lsh_tune import (
    CALIB_K,
    SHAPE_K,
    calibrate,
    fit_sketch_dims,
    pca_basis,
    quantise,
    shaped_planes,
    sketch_step,
    verify_recall,
)
from ._store import GrowArray
from .base import BaseIndex

log = logging.getLogger(__name__)

_DEFAULTS: dict[str, Any] = {
    "target_recall": 0.95,
    "bits": 256,
    "table_bits": None,
    "tables": None,
    "probes": None,
    "rerank": None,
    "prefilter": None,
    "flip_bits": 8,
    "calib_queries": 256,
    "verify_queries": 256,
    "sketch_dims": 128,
    "ram_budget": 300,
    "rebuild_inflation": 2.0,
    "auto_rebuild": False,
    "centre": True,
    "planes": "shaped",
}


class LSHIndex(BaseIndex):
    """Cosine LSH index; see the module docstring for the algorithm and the tuning rule."""

    backend = "lsh"

    def _set_params(self, params: dict[str, Any]) -> None:
        unknown = set(params) - set(_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown lsh parameters: {sorted(unknown)}")
        self.params = {**_DEFAULTS, **params}
        if self.params["planes"] not in ("shaped", "gaussian"):
            raise IndexStateError(
                f"planes must be 'shaped' or 'gaussian', not {self.params['planes']!r}"
            )
        tr = self.params["target_recall"]
        if not 0 < tr <= 1:
            raise IndexStateError(f"target_recall must be in (0, 1], got {tr}")
        self._codes = GrowArray(np.uint64, 1)
        self._sketch = GrowArray(np.int8, 1)
        self._sk_m = min(int(self.params["sketch_dims"]), self._dim)
        self._recall: dict[str, float] = {}
        self._prefilter = 0
        self._scratch = Scratch()
        self._n_tabled = 0
        self._bit_ones = np.zeros(0, np.int64)
        self._n_at_build = 0
        self._added_sum: np.ndarray | None = None
        self._n_added = 0

    # ---- geometry ---------------------------------------------------------------------
    def _layout(self, n: int, b: int | None = None, L: int | None = None, B: int | None = None):
        """Choose B, b, L for n rows (respecting overrides) and derive the key layout."""
        p = self.params
        b = b or p["table_bits"] or int(np.clip(round(math.log2(max(n, 2))), 6, 21))
        if not 1 <= b <= 24:
            raise IndexStateError(f"table_bits must be in 1..24, got {b}")
        per_word = 64 // b
        words = max(1, math.ceil(int(B or p["bits"]) / 64))
        L = L or p["tables"] or per_word * words
        words = max(words, math.ceil(L / per_word))
        self._b, self._L, self._W = int(b), int(L), int(words)
        self._B = 64 * words
        t = np.arange(self._L)
        self._key_word = (t // per_word).astype(np.intp)
        self._key_shift = ((t % per_word) * b).astype(np.uint64)
        self._key_bits = self._key_word[:, None] * 64 + (t % per_word)[:, None] * b + np.arange(b)
        self._mask = np.uint64((1 << b) - 1)
        self._max_probes = self._L << min(int(p["flip_bits"]), b)

    def _relayout(self, b: int) -> None:
        """Switch to b bits per table (re-bucketing the stored codes; no re-hashing)."""
        self._layout(self._n_rows, b)
        self._rebucket()

    def _project(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 1:  # single query: unthreaded (see _kernels.matvec)
            return matvec(self._planes, x) - self._offset
        return x @ self._planes.T - self._offset

    def _pack(self, proj: np.ndarray) -> np.ndarray:
        bits = np.packbits(proj > 0, axis=-1, bitorder="little")
        return np.ascontiguousarray(bits).view(np.uint64)

    def _unit_block(self, lo: int, hi: int) -> np.ndarray:
        blk = self._fetch_block(lo, hi)
        if self._store is not None:
            x = widen_f16(np.ascontiguousarray(blk))
            x *= (self._store.inv_norm[lo:hi] * F16_SCALE)[:, None]
            return x
        x = np.asarray(blk, dtype=np.float32)
        n = np.linalg.norm(x, axis=1, keepdims=True)
        n[n == 0] = 1
        return x / n

    # ---- build ------------------------------------------------------------------------
    def build(self) -> None:
        """(Re)hash everything: learn the mean and medians, bucket, calibrate probes/re-rank."""
        t0 = time.perf_counter()
        self._compact()
        n, d = self._n_rows, self._dim
        self._layout(n)
        step = max(1, (1 << 23) // d)
        total = np.zeros(d, np.float64)
        for lo in range(0, n, step):
            total += self._unit_block(lo, min(n, lo + step)).sum(axis=0, dtype=np.float64)
        mean = (total / max(n, 1)).astype(np.float32)
        if not self.params["centre"]:  # plain SimHash, kept for comparison (see tests)
            mean = np.zeros(d, np.float32)
        rng = np.random.default_rng(self.seed)
        self._planes = rng.standard_normal((self._B, d), dtype=np.float32)
        self._mean = mean
        m = min(int(self.params["sketch_dims"]), d)
        m = fit_sketch_dims(self, m)
        if n > 2:
            vt, lam, lam_res, coords = pca_basis(self, rng, max(SHAPE_K, m))
            if self.params["planes"] == "shaped":
                self._planes = shaped_planes(self._planes, vt, lam, lam_res)
            m = min(m, len(vt))
            self._sk_basis = np.ascontiguousarray(vt[:m])
            self._sk_step = sketch_step(coords[:, :m])
        else:  # nothing to learn from: the first coordinates, unit steps
            m = min(m, max(n, 1))
            self._sk_basis = np.eye(m, d, dtype=np.float32)
            self._sk_step = np.full(m, 1 / 127, np.float32)
        self._sk_m = m
        # Medians and spreads from a sample (16k rows pin a median to ~1% of a sigma),
        # projected in chunks so the float32 copy stays small even at dim 4096.
        n_s = min(n, 32768, max(4096, (1 << 26) // d))
        sample = np.sort(rng.choice(n, n_s, replace=False)) if n else np.zeros(0, np.int64)
        ps = np.empty((len(sample), self._B), np.float32)
        sq = 0.0
        for lo in range(0, len(sample), step):
            xs = self._unit_rows(sample[lo : lo + step]) - mean
            ps[lo : lo + step] = xs @ self._planes.T
            sq += float(np.einsum("ij,ij->", xs, xs, dtype=np.float64))
        if len(sample):
            thr = np.median(ps, axis=0).astype(np.float32)
            if not self.params["centre"]:
                thr[:] = 0
            sigma = (ps - thr).std(axis=0).astype(np.float32)
            self._rms_radius = math.sqrt(sq / len(sample))
        else:
            thr = np.zeros(self._B, np.float32)
            sigma = np.ones(self._B, np.float32)
            self._rms_radius = 1.0
        sigma[sigma <= 0] = 1.0
        self._offset = (self._planes @ mean + thr).astype(np.float32)
        self._inv_sigma = (1.0 / sigma).astype(np.float32)
        codes = np.empty((n, self._W), np.uint64)
        sketch = np.empty((n, m), np.int8)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            unit = self._unit_block(lo, hi)
            codes[lo:hi] = self._pack(self._project(unit))
            sketch[lo:hi] = self._sketch_rows(unit)
        self._codes = GrowArray(np.uint64, self._W, data=codes)
        self._sketch = GrowArray(np.int8, m, data=sketch)
        t1 = time.perf_counter()
        self._rebucket()
        self._bit_ones = popcount_bits(codes, self._B)
        self._n_at_build = n
        self._added_sum = np.zeros(d, np.float64)
        self._n_added = 0
        self._built = True
        t2 = time.perf_counter()
        self._calibrate()
        t3 = time.perf_counter()
        log.info(
            "lsh build: n=%d dim=%d B=%d L=%d b=%d sketch=%d probes=%d prefilter/10=%d rerank/10=%d "
            "recall@10=%.4f (hash %.1fs, tables %.1fs, calibrate+verify %.1fs)",
            n,
            d,
            self._B,
            self._L,
            self._b,
            self._sk_m,
            self._probes,
            self._prefilter,
            self._rerank,
            self._recall.get("recall_at_10", float("nan")),
            t1 - t0,
            t2 - t1,
            t3 - t2,
        )

    def _sketch_rows(self, unit: np.ndarray) -> np.ndarray:
        """int8 principal coordinates of centred unit rows (the candidate-ranking sketch)."""
        return quantise((unit - self._mean) @ self._sk_basis.T, self._sk_step)

    def _rebucket(self) -> None:
        """Rebuild the CSR tables from stored codes over all live rows (no re-projection)."""
        live = np.flatnonzero(self._alive.view)
        codes = self._codes.view
        nb = 1 << self._b
        rows = np.empty((self._L, len(live)), np.int32)
        offs = np.empty((self._L, nb + 1), np.int64)
        kdt = np.uint16 if self._b <= 16 else np.uint32  # 16-bit keys get numpy's radix sort
        for t in range(self._L):
            col = codes[live, self._key_word[t]]
            keys = ((col >> self._key_shift[t]) & self._mask).astype(kdt)
            order = np.argsort(keys, kind="stable")
            rows[t] = live[order]
            offs[t, 0] = 0
            np.cumsum(np.bincount(keys, minlength=nb), out=offs[t, 1:])
        self._tab_rows = rows
        self._tab_offs = offs.astype(np.int32 if len(live) < 2**31 else np.int64)
        self._n_tabled = self._n_rows
        self._flatten_tables()

    def _flatten_tables(self) -> None:
        self._rows_flat = self._tab_rows.reshape(-1)
        self._offs_flat = self._tab_offs.reshape(-1)
        self._rows_stride = self._tab_rows.shape[1]
        self._offs_stride = self._tab_offs.shape[1]

    # ---- incremental updates --------------------------------------------------------
    def _on_add(self, rows: np.ndarray, unit: np.ndarray) -> None:
        if not self._built:
            return
        codes = self._pack(self._project(unit))
        self._codes.append(codes)
        self._sketch.append(self._sketch_rows(unit))
        self._bit_ones += popcount_bits(codes, self._B)
        self._added_sum += unit.sum(axis=0, dtype=np.float64)
        self._n_added += len(unit)

    def _after_add(self) -> None:
        if not self._built:
            return
        pending = self._n_rows - self._n_tabled
        if pending > max(1024, self._n_tabled // 32):
            self._rebucket()
        if self.params["auto_rebuild"] and self.needs_rebuild:
            log.info("lsh: distribution drifted (%s); rebuilding", self.drift())
            self.build()

    def _on_remove(self, rows: np.ndarray) -> None:
        if not self._built:
            return
        self._bit_ones -= popcount_bits(self._codes.view[rows], self._B)
        if self._n_rows - self._live > max(1024, self._n_rows // 4):
            self._reorganise()

    def _reorganise(self) -> None:
        """Drop dead rows (renumbering) and re-bucket, reusing the stored codes."""
        keep = self._compact()
        self._codes = GrowArray(np.uint64, self._W, data=self._codes.view[keep].copy())
        self._sketch = GrowArray(np.int8, self._sk_m, data=self._sketch.view[keep].copy())
        self._rebucket()

    def drift(self) -> dict[str, float]:
        """Measured distribution drift since the last build (see module docstring)."""
        live = max(self._live, 1)
        p = self._bit_ones / live
        per_bit = 2.0 * (p * p + (1 - p) ** 2)
        inflation = float(np.mean(np.prod(per_bit[self._key_bits], axis=1))) if self._built else 1.0
        shift = 0.0
        if self._n_added:
            added_mean = self._added_sum / self._n_added
            shift = float(np.linalg.norm(added_mean - self._mean) / max(self._rms_radius, 1e-9))
        return {
            "bucket_inflation": inflation,
            "bit_imbalance": float(np.mean(np.abs(p - 0.5))) if self._built else 0.0,
            "added_mean_shift": shift,
            "added_since_build": float(self._n_added),
        }

    @property
    def needs_rebuild(self) -> bool:
        """True if never built, bits lost balance (bucket inflation), or size changed 2x."""
        if not self._built:
            return True
        if self.drift()["bucket_inflation"] > self.params["rebuild_inflation"]:
            return True
        lo, hi = sorted((self._live, self._n_at_build))
        return hi >= 1000 and hi > 2 * max(lo, 1)

    # ---- search -----------------------------------------------------------------------
    # One engine serves single and batched queries (a single query is a batch of one), so
    # both return the same rows in the same order. Per batch: one projection (GEMM), probe
    # keys and bucket offsets for every query at once, one ragged gather of all candidate
    # rows; per query only the de-duplication and the sketch top-R selection (a handful of
    # numpy calls); then one gather + widen + dot for the re-rank of every query's R rows.
    # Block sizes: small enough for the gathered codes to stay in cache (measured CPU ms per
    # query, broad clusters 20k x 512: 0.53 with 2M-entry gathers, 0.40 with 128k).
    _PROBE_CHUNK = 32  # queries per vectorised probe-key block
    _GATHER_ENTRIES = 1 << 17  # candidate entries per ragged gather
    _RERANK_ELEMS = 1 << 23  # float16 elements per re-rank gather

    def _probe_keys(self, projs: np.ndarray, qcodes: np.ndarray, n_probes: int):
        """(Q, P) table numbers and keys of the n_probes best (table, flip set) pairs per query,
        scored by the sum of squared normalised margins of the flipped bits."""
        m = min(int(self.params["flip_bits"]), self._b)
        nq = len(projs)
        home = (qcodes[:, self._key_word] >> self._key_shift) & self._mask  # (Q, L)
        z2 = np.square(projs * self._inv_sigma)[:, self._key_bits]  # (Q, L, b)
        if m < self._b:
            sel = np.argpartition(z2, m - 1, axis=2)[:, :, :m]
        else:
            sel = np.broadcast_to(np.arange(self._b), z2.shape)
        s = np.take_along_axis(z2, sel, axis=2)
        subsets = _subsets(m)
        scores = (s @ subsets.T).reshape(nq, -1)  # (Q, L * 2**m)
        # Sum of distinct powers of two == OR; float64 is exact below 2**53 and uses BLAS.
        flips = (np.ldexp(1.0, sel) @ subsets.T.astype(np.float64)).reshape(nq, -1)
        n_probes = min(n_probes, scores.shape[1])
        if n_probes < scores.shape[1]:
            pick = np.argpartition(scores, n_probes - 1, axis=1)[:, :n_probes]
        else:
            pick = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        tab = pick // subsets.shape[0]
        keys = np.take_along_axis(home, tab, axis=1).astype(np.int64)
        keys ^= np.take_along_axis(flips, pick, axis=1).astype(np.int64)
        return tab, keys

    def _gather(self, projs, qcodes, n_probes: int):
        """Candidate entries (with repeats) of every query: flat rows (int32), their Hamming
        distance to the query's code (uint16, one vectorised pass), and the end of each
        query's entries."""
        nq = len(projs)
        rows_out, ham_out, ends_out, base = [], [], [], 0
        for lo in range(0, nq, self._PROBE_CHUNK):
            hi = min(nq, lo + self._PROBE_CHUNK)
            tab, keys = self._probe_keys(projs[lo:hi], qcodes[lo:hi], n_probes)
            slot = tab * self._offs_stride + keys
            starts = self._offs_flat[slot].astype(np.int64)
            lens = (self._offs_flat[slot + 1] - starts).ravel()
            shift = (starts + tab * self._rows_stride).ravel()
            ends = np.cumsum(lens)
            total = int(ends[-1]) if len(ends) else 0
            q_ends = ends.reshape(hi - lo, -1)[:, -1]
            if total:
                idx = np.repeat(shift - (ends - lens), lens)
                idx += np.arange(total, dtype=np.int64)
                rows = self._rows_flat[idx]
                per_q = np.diff(q_ends, prepend=0)
                rows_out.append(rows)
                ham_out.append(hamming_many(self._codes.view, rows, qcodes[lo:hi], per_q))
            ends_out.append(q_ends + base)
            base += total
        if not rows_out:
            return np.zeros(0, np.int32), np.zeros(0, np.uint16), np.concatenate(ends_out)
        return np.concatenate(rows_out), np.concatenate(ham_out), np.concatenate(ends_out)

    def _dedup(self, cand: np.ndarray, ham: np.ndarray, qcode, exclude: int):
        """Unique live rows (and their Hamming distances) of one query's entries plus the
        pending (un-bucketed) rows."""
        pending = self._n_rows - self._n_tabled
        if pending:
            extra = np.arange(self._n_tabled, self._n_rows, dtype=np.int32)
            cand = np.concatenate([cand, extra])
            ham = np.concatenate([ham, hamming_rows(self._codes.view, extra, qcode)])
        if len(cand) == 0:
            return cand.astype(np.int32), ham
        # De-duplicate in O(C): stamp each row with its last position; keep positions that
        # still hold their own stamp. The stamp array is never cleared (stale values are
        # always overwritten before being read).
        seen = self._scratch.get("seen", (self._n_rows,), np.int32)
        pos = self._scratch.arange(len(cand))
        seen[cand] = pos
        keep = seen[cand] == pos
        if self._live != self._n_rows:
            keep &= self._alive.view[cand]
        if exclude >= 0:
            keep &= cand != exclude
        return cand[keep], ham[keep]

    def _candidate_sets(self, projs, qcodes, n_probes: int, need: int, exclude=None):
        """Yield (j, unique candidate rows, their Hamming distances) per query. A query whose
        buckets hold fewer than `need` rows is re-probed alone with doubled budgets."""
        nq = len(projs)
        per_probe = max(1.0, self._live / (1 << self._b))
        step = max(1, int(self._GATHER_ENTRIES // max(1.0, n_probes * per_probe)))
        for lo in range(0, nq, step):
            hi = min(nq, lo + step)
            flat, ham, ends = self._gather(projs[lo:hi], qcodes[lo:hi], n_probes)
            start = 0
            for j in range(lo, hi):
                end = int(ends[j - lo])
                ex = -1 if exclude is None else int(exclude[j])
                c, h = self._dedup(flat[start:end], ham[start:end], qcodes[j], ex)
                start = end
                p = n_probes
                while len(c) < need and len(c) < self._live - (ex >= 0):
                    if p >= self._max_probes:
                        break
                    p = min(2 * p, self._max_probes)
                    f1, h1, _ = self._gather(projs[j : j + 1], qcodes[j : j + 1], p)
                    c, h = self._dedup(f1, h1, qcodes[j], ex)
                yield j, c, h

    def candidates(self, vector) -> np.ndarray:
        """Ids a query would rank (diagnostics: bucket quality, tests)."""
        self._check_ready()
        q = self._as_query(vector)
        proj = self._project(q)[None, :]
        _, c, _ = next(self._candidate_sets(proj, self._pack(proj), self._probes, 0))
        return self._row_ids.view[c]

    def _n_entries(self, projs, qcodes, n_probes: int) -> float:
        """Mean candidate entries (with repeats) per query at a probe budget (cheap: offsets)."""
        tot = 0
        for lo in range(0, len(projs), self._PROBE_CHUNK):
            tab, keys = self._probe_keys(
                projs[lo : lo + self._PROBE_CHUNK], qcodes[lo : lo + self._PROBE_CHUNK], n_probes
            )
            slot = tab * self._offs_stride + keys
            tot += int((self._offs_flat[slot + 1] - self._offs_flat[slot]).sum())
        return tot / max(len(projs), 1)

    def _pre_depth(self, k: int) -> int:
        """Rows kept by the Hamming prefilter for k results (0: no prefilter)."""
        if not self._prefilter:
            return 0
        return max(self._depth(k), math.ceil(self._prefilter * max(k, CALIB_K) / CALIB_K))

    def _depth(self, k: int) -> int:
        return max(k, math.ceil(self._rerank * max(k, CALIB_K) / CALIB_K))

    def _sketch_query(self, qs: np.ndarray) -> np.ndarray:
        """Per-query weights w with sketch_row . w ~ (row - mean) . q (float32, (Q, m))."""
        if len(qs) == 1:
            return (matvec(self._sk_basis, qs[0]) * self._sk_step)[None, :]
        return (qs @ self._sk_basis.T) * self._sk_step

    def _sketch_scores(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        g8 = self._scratch.get("sk8", (len(rows), self._sk_m), np.int8)
        np.take(self._sketch.view, rows, axis=0, out=g8)
        g = self._scratch.get("sk32", (len(rows), self._sk_m), np.float32)
        np.copyto(g, g8, casting="unsafe")
        return matvec(g, w)

    def _query_rows(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return next(self._query_rows_batch(q[None, :], k))

    def _query_rows_batch(self, qs: np.ndarray, k: int, exclude=None):
        projs = self._project(qs[0])[None, :] if len(qs) == 1 else self._project(qs)
        yield from self._search_many(qs, projs, self._pack(projs), k, exclude)

    def _search_many(self, qs, projs, qcodes, k: int, exclude=None):
        """Yield (rows, exact cosine) best first for every query (rows exclude `exclude[j]`)."""
        depth = self._depth(k)
        w = self._sketch_query(qs)
        sel = np.full((len(qs), depth), -1, np.int64)
        pre = self._pre_depth(k)
        for j, c, h in self._candidate_sets(projs, qcodes, self._probes, 2 * depth, exclude):
            if len(c) < min(k, self._live):  # large k: rank every row by its sketch
                c = np.flatnonzero(self._alive.view).astype(np.int32)
                if exclude is not None and exclude[j] >= 0:
                    c = c[c != exclude[j]]
            elif pre and len(c) > pre:
                c = c[np.argpartition(h, pre - 1)[:pre]]
            if len(c) > depth:
                s = self._sketch_scores(c, w[j])
                c = c[np.argpartition(-s, depth - 1)[:depth]]
            sel[j, : len(c)] = c
        yield from self._rerank_many(sel, qs, k)

    def _rerank_many(self, sel: np.ndarray, qs: np.ndarray, k: int):
        """Exact cosine of every query's selected rows (-1 = padding); top k, best first."""
        nq, depth = sel.shape
        step = max(1, self._RERANK_ELEMS // max(1, depth * self._dim))
        for lo in range(0, nq, step):
            hi = min(nq, lo + step)
            rows = sel[lo:hi]
            ok = rows >= 0
            safe = np.where(ok, rows, 0)
            scores = self._exact_scores(safe, qs[lo:hi])
            scores[~ok] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            top_s = np.take_along_axis(scores, order, axis=1)
            top_r = np.take_along_axis(rows, order, axis=1)
            for r, s in zip(top_r, top_s, strict=True):
                fin = np.isfinite(s)
                yield r[fin], s[fin]

    def _exact_scores(self, rows: np.ndarray, qs: np.ndarray) -> np.ndarray:
        """Cosine between qs[j] and stored rows[j, :] ((Qc, R) float32)."""
        qc, r = rows.shape
        flat = rows.ravel()
        if self._store is not None:
            g = self._scratch.get("g16", (len(flat), self._dim), np.float16)
            self._store.take(flat, out=g)
            wide = widen_f16(g, self._scratch.get("w32", (len(flat), self._dim), np.int32))
            s = np.vecdot(wide.reshape(qc, r, self._dim), (qs * F16_SCALE)[:, None, :])
            return s * self._store.inv_norm[flat].reshape(qc, r)
        got = self._fetch_rows(flat)
        x = got.astype(np.float32) if got.dtype != np.float16 else widen_f16(got) * F16_SCALE
        norms = np.linalg.norm(x, axis=1)
        norms[norms == 0] = 1.0
        return np.vecdot(x.reshape(qc, r, self._dim), qs[:, None, :]) / norms.reshape(qc, r)

    # ---- calibration ------------------------------------------------------------------
    def tune(self, target_recall: float | None = None, **overrides: Any) -> tuple[int, int]:
        """Re-choose probes/re-rank depth for a new target (no re-hashing; the table layout
        may be re-bucketed from the stored codes), re-measure recall; returns them."""
        self._check_ready()
        bad = set(overrides) - {"probes", "rerank", "prefilter"}
        if bad:
            raise TypeError(
                f"tune() accepts target_recall, probes, rerank, prefilter; got {sorted(bad)}"
            )
        if target_recall is not None:
            if not 0 < target_recall <= 1:
                raise IndexStateError(f"target_recall must be in (0, 1], got {target_recall}")
            self.params["target_recall"] = float(target_recall)
        self.params.update({"probes": None, "rerank": None, "prefilter": None, **overrides})
        self._calibrate()
        return self._probes, self._rerank

    def _calibrate(self) -> None:
        """Calibrate, check recall on held-out rows, re-tune with a stricter goal if short."""
        target = float(self.params["target_recall"])
        goal = target
        for attempt in range(4):
            self._probes, self._rerank, self._prefilter = calibrate(self, goal)
            self._recall = verify_recall(self)
            got = self._recall["recall_at_10"]
            log.info(
                "lsh recall check %d: %.4f on %d held-out rows (target %.3f, calibrated for "
                "%.3f; b=%d probes=%d prefilter/10=%d rerank/10=%d)",
                attempt,
                got,
                self._recall["queries"],
                target,
                goal,
                self._b,
                self._probes,
                self._prefilter,
                self._rerank,
            )
            if got >= target or goal >= 1.0 or self._fixed_params():
                break
            goal = min(1.0, goal + (target - got) + 0.005)
        self._recall["target"] = target
        if self._recall["recall_at_10"] < target:
            (log.info if self._fixed_params() else log.warning)(
                "lsh: measured recall@10 %.4f is below the target %.3f",
                self._recall["recall_at_10"],
                target,
            )

    def _fixed_params(self) -> bool:
        return self.params["probes"] is not None and self.params["rerank"] is not None

    @property
    def measured_recall(self) -> dict[str, float] | None:
        """Recall@10 against exact search measured at the last build/tune on held-out rows of
        the index's own vectors: {"recall_at_10", "queries", "target"} (None if unbuilt)."""
        return dict(self._recall) if self._built and self._recall else None

    # ---- persistence ------------------------------------------------------------------
    def memory_bytes(self) -> dict[str, int]:
        out = super().memory_bytes()
        if self._built:
            out["codes"] = self._codes.nbytes()
            out["sketch"] = self._sketch.nbytes() + int(self._sk_basis.nbytes)
            out["tables"] = int(self._tab_rows.nbytes + self._tab_offs.nbytes)
            out["planes"] = int(self._planes.nbytes + self._offset.nbytes + self._mean.nbytes)
            out["scratch"] = 4 * self._n_rows  # per-thread stamp array
        return out

    def _state(self):
        if not self._built:
            return {}, {}
        state = {
            "B": self._B,
            "L": self._L,
            "b": self._b,
            "W": self._W,
            "probes": self._probes,
            "rerank": self._rerank,
            "prefilter": self._prefilter,
            "n_tabled": self._n_tabled,
            "n_at_build": self._n_at_build,
            "n_added": self._n_added,
            "rms_radius": self._rms_radius,
            "sketch_dims": self._sk_m,
            "recall": self._recall,
        }
        sections = {
            "codes": self._codes.view,
            "tab_rows": self._tab_rows,
            "tab_offs": self._tab_offs,
            "planes": self._planes,
            "offset": self._offset,
            "inv_sigma": self._inv_sigma,
            "mean": self._mean,
            "bit_ones": self._bit_ones,
            "added_sum": self._added_sum,
            "sketch": self._sketch.view,
            "sk_basis": self._sk_basis,
            "sk_step": self._sk_step,
        }
        return state, sections

    def _restore(self, state, sections) -> None:
        self._set_params({k: v for k, v in self.params.items() if k in _DEFAULTS})
        if not self._built:
            return
        self._layout(int(state["n_tabled"]), int(state["b"]), int(state["L"]), int(state["B"]))
        if (self._L, self._b, self._W) != (state["L"], state["b"], state["W"]):
            raise ValueError("table layout in header is inconsistent")
        n = self._n_rows
        self._codes = GrowArray(np.uint64, self._W, data=sections["codes"])
        if sections["codes"].shape != (n, self._W):
            raise ValueError("codes section does not match the row count")
        self._tab_rows, self._tab_offs = sections["tab_rows"], sections["tab_offs"]
        if self._tab_offs.shape != (self._L, (1 << self._b) + 1) or len(self._tab_rows) != self._L:
            raise ValueError("hash tables do not match the layout")
        if self._tab_rows.size and (self._tab_rows.min() < 0 or self._tab_rows.max() >= n):
            raise ValueError("hash tables reference rows out of range")
        self._flatten_tables()
        self._planes, self._offset = sections["planes"], sections["offset"]
        self._inv_sigma, self._mean = sections["inv_sigma"], sections["mean"]
        if self._planes.shape != (self._B, self._dim):
            raise ValueError("hyperplane section has the wrong shape")
        self._bit_ones, self._added_sum = sections["bit_ones"], sections["added_sum"]
        self._probes, self._rerank = int(state["probes"]), int(state["rerank"])
        self._prefilter = int(state.get("prefilter") or 0)
        self._n_tabled = int(state["n_tabled"])
        self._n_at_build, self._n_added = int(state["n_at_build"]), int(state["n_added"])
        self._rms_radius = float(state["rms_radius"])
        if "sketch" not in sections:  # format 1 (Hamming re-rank, no recall check): rebuild
            log.info("lsh index saved by format 1 (no sketch, no stored recall); rebuilding it")
            self.build()
            return
        self._sk_m = int(state["sketch_dims"])
        self._sketch = GrowArray(np.int8, self._sk_m, data=sections["sketch"])
        self._sk_basis, self._sk_step = sections["sk_basis"], sections["sk_step"]
        if self._sketch.view.shape != (n, self._sk_m) or self._sk_basis.shape != (
            self._sk_m,
            self._dim,
        ):
            raise ValueError("sketch sections do not match the layout")
        self._recall = {k: float(v) for k, v in dict(state.get("recall") or {}).items()}


def _subsets(m: int) -> np.ndarray:
    """All 2**m subsets of m items as a 0/1 float32 matrix, the empty set first."""
    cache = _SUBSETS.get(m)
    if cache is None:
        cache = ((np.arange(1 << m)[:, None] >> np.arange(m)) & 1).astype(np.float32)
        _SUBSETS[m] = cache
    return cache


_SUBSETS: dict[int, np.ndarray] = {}

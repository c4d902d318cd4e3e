"""Random-hyperplane (SimHash) LSH for cosine search, tuned for pooled CNN features.

Pipeline for one query (numpy, vectorised, no Python loop over candidates; steps 3-5's
candidate stage also has a compiled engine, `_numba_kernels`, that returns the same rows):

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
5. Candidates are de-duplicated with a stamp array (O(C), no sort; one slot per (query, row)
   for a block of queries), the `prefilter` nearest by Hamming distance over all B bits are
   ranked by an int8 principal-coordinate sketch (m = 64-128 coordinates, in RAM), its top R
   are re-ordered by the refine codes (the first ``refine_dims`` = 256 principal coordinates,
   quantised alike, memory-mapped from the index file once it is saved or loaded), and only
   their top R2 are re-ranked by exact cosine against the stored float16 vectors (owned or
   an external `source=`, see base.py). Measured at 100k x 4096 (heavy-tailed clusters,
   recall 0.95): the sketch alone needed R = 285 exact rows (1.5 of 3.7 ms per query); with
   refine codes R2 = 29 (0.15 ms) and 2.4 ms per query.
   The query engine (`_lsh_search.py`) does every step for a block of queries at once, with
   no Python loop per query: `query_batch` is one pass per block, `query` a block of one,
   and both return the same rows (ties are broken by position in the query's own list).

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
* ``probes``, ``prefilter``, ``rerank`` (R) and ``refine`` (R2) are calibrated on the data
  (`_lsh_tune`): stored rows are used as queries against their exact 10-NN; for a grid of
  probe budgets (steps of sqrt 2) the sketch rank of every true neighbour among the candidates (and
  its refine rank among the sketch's top R) gives recall as a function of the depths, and
  the cheapest choice under a measured cost model whose recall, less 1.5 standard errors
  of the per-query mean, reaches ``target_recall`` (default 0.95) is chosen. R is per
  10 results and scales with k; probes double at query time while they yield fewer than 2R
  candidates. `tune(target)` re-calibrates without re-hashing.
* Exact fallback (``exact_fallback``, default True): an exact scan, modelled per query, is the
  setting to beat. A library whose scan is cheaper than an LSH query's fixed cost, or where
  every setting reaching the target is modelled dearer than the scan or re-ranks a quarter of
  the rows, is searched exactly (`_lsh_search._exact_many`; tables, codes and sketch are
  still kept for incremental adds and the next build); the held-out check then measures the
  exact path and the stored recall carries ``"exact": 1.0`` (`imgfinder status` says so).

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
from . import _persist
from ._kernels import (
    F16_SCALE,
    Scratch,
    matvec,
    popcount_bits,
    widen_f16,
)
from ._lsh_search import LSHSearch
from ._lsh_tune import (
    SHAPE_K,
    calibrate,
    fit_sketch_dims,
    pca_basis,
    quantise,
    shaped_planes,
    sketch_step,
    verify_recall,
)
from ._lsh_view import Tuning as _Tuning
from ._store import GrowArray, MappedRows
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
    "refine_dims": 256,
    "refine": None,
    "ram_budget": 300,
    "rebuild_inflation": 2.0,
    "auto_rebuild": False,
    "centre": True,
    "planes": "shaped",
    "exact_fallback": True,
}


class LSHIndex(LSHSearch, BaseIndex):
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
        self._rf_m, self._refine = 0, 0  # refine code width; refine depth per 10 (0: off)
        self._refine_codes = MappedRows(np.int8, 0)
        self._recall: dict[str, float] = {}
        self._prefilter = 0
        self._exact_mode = False  # calibration chose an exact scan (see _lsh_tune.calibrate)
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
        m_r = min(int(self.params["refine_dims"] or 0), d)
        self._rf_m = m_r
        m = fit_sketch_dims(self.tuning(), m)
        if n > 2:
            vt, lam, lam_res, coords = pca_basis(self.tuning(), rng, max(SHAPE_K, m, m_r))
            if self.params["planes"] == "shaped":
                self._planes = shaped_planes(self._planes, vt, lam, lam_res)
            m, m_r = min(m, len(vt)), min(m_r, len(vt))
            # One basis: the sketch is the first m principal coordinates, the (memory-mapped)
            # refine code the first m_r, quantised alike, so one product serves both.
            self._sk_basis = np.ascontiguousarray(vt[: max(m, m_r)])
            self._sk_step = sketch_step(coords[:, : max(m, m_r)])
        else:  # nothing to learn from: the first coordinates, unit steps
            m, m_r = min(m, max(n, 1)), 0
            self._sk_basis = np.eye(m, d, dtype=np.float32)
            self._sk_step = np.full(m, 1 / 127, np.float32)
        self._sk_m, self._rf_m = m, m_r
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
        refine = np.empty((n, m_r), np.int8)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            unit = self._unit_block(lo, hi)
            codes[lo:hi] = self._pack(self._project(unit))
            sketch[lo:hi], refine[lo:hi] = self._sketch_rows(unit)
        self._codes = GrowArray(np.uint64, self._W, data=codes)
        self._sketch = GrowArray(np.int8, m, data=sketch)
        self._refine_codes = MappedRows(np.int8, m_r, base=refine)
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
            "lsh build: n=%d dim=%d %s recall@10=%.4f (hash %.1fs, tables %.1fs, "
            "calibrate+verify %.1fs)",
            *(n, d, self._summary(), self._recall.get("recall_at_10", float("nan"))),
            *(t1 - t0, t2 - t1, t3 - t2),
        )

    def _summary(self) -> str:
        if self._exact_mode:
            return f"exact search (B={self._B} L={self._L} b={self._b} kept for later builds)"
        return (
            f"B={self._B} L={self._L} b={self._b} sketch={self._sk_m} refine_dims={self._rf_m} "
            f"probes={self._probes} prefilter/10={self._prefilter} rerank/10={self._rerank} "
            f"refine/10={self._refine}"
        )

    def _sketch_rows(self, unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int8 principal coordinates of centred unit rows: (sketch (n, m), refine (n, m_r))."""
        c = quantise((unit - self._mean) @ self._sk_basis.T, self._sk_step)
        return np.ascontiguousarray(c[:, : self._sk_m]), np.ascontiguousarray(c[:, : self._rf_m])

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
        sketch, refine = self._sketch_rows(unit)
        self._sketch.append(sketch)
        self._refine_codes.append(refine)
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
        self._refine_codes = self._refine_codes.compacted(keep)
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

    # ---- calibration ------------------------------------------------------------------
    def tune(self, target_recall: float | None = None, **overrides: Any) -> tuple[int, int]:
        """Re-choose probes/re-rank depth for a new target (no re-hashing; the table layout
        may be re-bucketed from the stored codes), re-measure recall; returns them."""
        self._check_ready()
        bad = set(overrides) - {"probes", "rerank", "prefilter", "refine"}
        if bad:
            raise TypeError(
                f"tune() accepts target_recall, probes, rerank, prefilter, refine; got {sorted(bad)}"
            )
        if target_recall is not None:
            if not 0 < target_recall <= 1:
                raise IndexStateError(f"target_recall must be in (0, 1], got {target_recall}")
            self.params["target_recall"] = float(target_recall)
        keys = ("probes", "rerank", "prefilter", "refine")
        self.params.update({**dict.fromkeys(keys), **overrides})
        self._calibrate()
        return self._probes, self._rerank

    def _calibrate(self) -> None:
        """Calibrate, check recall on held-out rows, re-tune with a stricter goal if short."""
        target = float(self.params["target_recall"])
        goal = target
        for attempt in range(4):
            got = calibrate(self.tuning(), goal)
            self._probes, self._rerank, self._prefilter, self._refine, self._exact_mode = got
            self._recall = verify_recall(self.tuning())  # the real query path, exact or not
            if self._exact_mode:
                self._recall["exact"] = 1.0
            got = self._recall["recall_at_10"] - self._recall.get("stderr", 0.0)
            log.info(
                "lsh recall check %d: %.4f (less one s.e.) on %d held-out rows (target %.3f, for "
                "%.3f; %s)",
                *(attempt, got, self._recall["queries"], target, goal, self._summary()),
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

    def tuning(self) -> _Tuning:
        """The view of this index that calibration works on (`_lsh_tune.Tunable`)."""
        return _Tuning(self)

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
            out["refine"] = self._refine_codes.ram_bytes()  # 0 once memory-mapped (loaded)
            out["tables"] = int(self._tab_rows.nbytes + self._tab_offs.nbytes)
            out["planes"] = int(self._planes.nbytes + self._offset.nbytes + self._mean.nbytes)
            out["scratch"] = 4 * self._n_rows  # per-thread stamp array
        return out

    def save(self, path) -> None:
        super().save(path)
        mapped = self._built and self._rf_m and len(self._refine_codes) and _persist.MAPPED_EXTRA
        if mapped:  # serve the refine codes from the file from now on
            base = _persist.map_section(path, "refine_codes")
            self._refine_codes = MappedRows(np.int8, self._rf_m, base=base)

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
            "refine_dims": self._rf_m,
            "refine": self._refine,
            "recall": self._recall,
            "exact_mode": self._exact_mode,
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
            "refine_codes": self._refine_codes.chunks(),
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
        self._exact_mode = bool(state.get("exact_mode", False))
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
        # format 2 has no refine stage: its files load as they were calibrated (refine off)
        self._rf_m, self._refine = int(state.get("refine_dims", 0)), int(state.get("refine", 0))
        ref = sections.get("refine_codes", np.empty((n, 0), np.int8))
        self._refine_codes = MappedRows(np.int8, self._rf_m, base=ref)
        basis_rows = max(self._sk_m, self._rf_m)
        if (
            self._sketch.view.shape != (n, self._sk_m)
            or self._sk_basis.shape != (basis_rows, self._dim)
            or self._sk_step.shape != (basis_rows,)
            or ref.shape != (n, self._rf_m)
        ):
            raise ValueError("sketch sections do not match the layout")
        self._recall = {k: float(v) for k, v in dict(state.get("recall") or {}).items()}

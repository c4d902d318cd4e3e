"""Data-driven LSH choices: principal directions (plane shaping and the re-rank sketch),
the table layout, probes and re-rank depth (calibration), and the held-out recall check.

Calibration: stored rows serve as queries against the exact 10-NN of the rest. For every
table layout in a short grid (bits per table b, re-bucketed from the stored codes, no
re-hashing) and every probe budget in a grid of sqrt(2) steps, the rank of every true neighbour in
the sketch order of the candidates is recorded; recall as a function of the exact re-rank
depth R then follows without re-running queries. With refine codes (int8 principal
coordinates, wider than the sketch, memory-mapped after load) a second stage re-orders the
sketch's top R and passes only the top R2 to the exact re-rank; for a grid of R the rank of
every true neighbour in refine order among the sketch's top R is recorded too, giving recall
as a function of (R, R2). Among the (b, probes, R, R2) that reach the target (less CALIB_SE
= 1.5 standard errors of the per-query mean) and fit the RAM budget, the one with the lowest
modelled cost is chosen. Cost model constants (seconds) were measured per
stage on the 2-core reference box with numpy 2.x (100k x 4096, memory-mapped vectors).
An exact scan's modelled cost is the setting to beat (less the LSH query's fixed cost): a
library where no setting beats it, or every one re-ranks EXACT_SHARE of the rows, is
searched exactly, and a layout's probe budgets stop growing once its candidates are
HOPELESS_SHARE of the rows (more probes only find the same rows again).

Verification: `verify_recall` then runs the real query path for other held-out rows and
measures recall@10 against exact search; the index re-calibrates with a stricter goal until
the measured recall, less one standard error of its per-query mean, meets the target (see
LSHIndex._calibrate), so that new queries see the target too, not only the sample.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger(__name__)

# Candidate-stage costs of the numpy engine, per stage:
_COSTS_NUMPY = {
    "probe": 60e-9,  # per probed bucket (offset lookups, ragged gather set-up)
    "entry": 20e-9,  # per candidate entry (ragged gather, de-duplication)
    "unique": 30e-9,  # per unique candidate (Hamming distance over B bits, prefilter select)
    "sk_row": 20e-9,  # per sketch-ranked candidate: a random memory access
    "sk_elem": 0.6e-9,  # per sketch byte of a ranked candidate (gather, widen, dot)
}
# The same stages in the compiled engine (_numba_kernels.candidate_block: one pass per query,
# prefetched loads), fitted by least squares to thread-CPU times of single queries at 1M x
# 512 (heavy-tailed and fitted distributions, probes 16-4,096, prefilters 0-16,384):
# entries are cheaper (no ragged-gather temporaries), unique rows and sketch rows cost about
# what their random memory accesses cost. Calibration uses the table of the engine that will
# answer (`Tunable.compiled`), so it picks the cheapest setting for that engine.
_COSTS_COMPILED = {
    "probe": 36e-9,
    "entry": 8e-9,
    "unique": 40e-9,
    "sk_row": 40e-9,
    "sk_elem": 0.6e-9,
}
# Hamming prefilter depths tried (per 10 results). The deep ones matter on clustered data of
# high intrinsic dimension, where 256-bit Hamming distance ranks neighbours poorly: at 1M x 512
# (heavy-tailed clusters, 2,048 probes, 146k unique candidates) keeping the Hamming best 4,096
# kept 0.956 of the neighbours the candidates held 0.980 of, the best 16,384 most of the rest,
# at a fraction of the cost of sketch-scoring all 146k.
_PREFILTERS = (0, 32768, 16384, 8192, 4096, 2048, 1024, 512, 256, 128, 64)
_COST_ROW = 1.5e-6  # per re-ranked row: random accesses to (mapped) pages before arithmetic
_COST_ELEM = 0.9e-9  # per re-ranked float16 element (gather + widen + dot)
_COST_RF_ROW = 40e-9  # per refine-scored row: a random access to a memory-mapped page
_COST_RF_ELEM = 0.6e-9  # per refine byte (gather, widen, dot)
# Sketch depths R tried with a refine stage (the rows its int8 codes re-order).
_REFINE_GRID = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
# An exact scan of the index's own rows for one query (brute_force_knn: float16 widened and
# dotted block by block), measured (thread CPU, median of 200 queries): 0.08 ms at 1,000 x 64,
# 0.14 ms at 3,000 x 64, 3.7 ms at 20,000 x 256, 5.4 ms at 3,000 x 2560: ~0.7 ns per element
# plus ~40 us. The LSH pipeline's fixed cost per single query (projection, probe keys, a dozen
# small numpy steps): 0.31 ms at 1,000 x 64, where it has almost nothing to rank. Calibration
# takes an exact scan as the setting to beat: a library small enough, or one where the target
# needs most rows re-ranked, is searched exactly (recall 1.0).
_COST_EXACT_ELEM = 0.7e-9
_COST_EXACT_QUERY = 40e-6
_COST_LSH_QUERY = 300e-6
# ... and gives up on an LSH setting whose exact re-rank would score this share of the rows
EXACT_SHARE = 0.25
# ... and stops adding probes to a layout once its candidates are this share of the rows
HOPELESS_SHARE = 0.5
CALIB_K = 10
# Calibration accepts a setting whose recall over its sample, less CALIB_SE standard errors of
# the per-query mean, reaches the goal. verify_recall then checks the real query path on other
# rows at mean less 1 s.e. and re-calibrates for a stricter goal when that falls short, so the
# margin here only has to make a re-tune unlikely: 3 s.e. over-shot (heavy-tailed clusters at
# 1M x 512: 0.974 measured for a 0.95 target, 4,096 probes where fewer would have done).
CALIB_SE = 1.5
SHAPE_K = 64  # principal directions that shape the planes
FIXED_ROWS = 100_000  # fixed arrays are charged to the RAM budget as if over this many rows


class Tunable(Protocol):
    """What calibration needs of an index (LSHIndex.tuning() provides it): sizes and
    parameters, sample rows with their exact neighbours, the table layout, and the query
    stages (encode, probe and de-duplicate, sketch scores, the full search)."""

    params: dict[str, Any]
    seed: int
    n_rows: int  # stored rows, dead ones included
    live: int
    dim: int
    words: int  # 64-bit words per code
    sketch_dims: int
    refine_dims: int  # width of the refine codes (0: no refine stage)
    owns_vectors: bool
    compiled: bool  # queries run on the compiled engine (its cost table applies)
    table_bits: int
    tables: int
    max_probes: int
    mean: np.ndarray
    state_key: tuple  # changes whenever rows are added, removed or renumbered
    truth_cache: Any  # calibration's ground truth, kept by the index between tunings

    def unit_rows(self, rows: np.ndarray) -> np.ndarray: ...
    def live_rows(self) -> np.ndarray: ...
    def exact_knn(self, qs: np.ndarray, k: int, exclude: np.ndarray): ...
    def relayout(self, b: int) -> None: ...
    def encode(self, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def entries(self, projs: np.ndarray, codes: np.ndarray, probes: int) -> float: ...
    def candidate_sets(
        self, projs: np.ndarray, codes: np.ndarray, probes: int, exclude: np.ndarray
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]: ...
    def sketch_weights(self, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def sketch_scores(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray: ...
    def refine_scores(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray: ...
    def search(
        self, qs, projs, codes, k: int, exclude: np.ndarray
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...


def pca_basis(index: Tunable, rng: np.random.Generator, k: int):
    """Top-k principal directions of the centred unit rows (randomized SVD of a sample,
    one power iteration). Returns (vt (k, d) float32, variances (k,), residual variance per
    remaining direction, sample coordinates (n_s, k))."""
    n, d = index.n_rows, index.dim
    n_pca = min(n, max(2048, min(8192, (1 << 25) // d)))
    rows = np.sort(rng.choice(n, n_pca, replace=False))
    xs = index.unit_rows(rows) - index.mean
    k = max(1, min(k, d, n_pca - 1))
    omega = rng.standard_normal((d, min(d, k + 16)), dtype=np.float32)
    q = _orthonormal(xs @ omega)
    q = _orthonormal(xs @ (xs.T @ q))  # one power iteration
    _, sv, vt = np.linalg.svd(q.T @ xs, full_matrices=False)
    lam = (sv[:k] ** 2 / n_pca).astype(np.float64)
    total = float(np.einsum("ij,ij->", xs, xs, dtype=np.float64)) / n_pca
    lam_res = max((total - lam.sum()) / max(d - k, 1), 1e-12 * max(total, 1e-30))
    vt = vt[:k].astype(np.float32)
    return vt, lam, lam_res, xs @ vt.T


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """Orthonormal basis of y's columns by Cholesky-QR in float64 (two small GEMMs; LAPACK's
    Householder QR of a tall matrix stalled for seconds on the loaded 2-core box)."""
    y = y.astype(np.float64)
    g = y.T @ y
    g.flat[:: len(g) + 1] += 1e-10 * max(float(np.trace(g)), 1e-30)
    c = np.linalg.cholesky(g)
    return (y @ np.linalg.inv(c).T).astype(np.float32)


def shaped_planes(g: np.ndarray, vt: np.ndarray, lam: np.ndarray, lam_res: float) -> np.ndarray:
    """Re-shape Gaussian plane normals to N(0, C**0.5), C the covariance of centred data.

    CNN features have low intrinsic dimension; an isotropic normal spends most of its
    length on directions where the data barely varies, so its bit is mostly noise.
    Weighting each principal direction by variance**0.25 (top 64; the rest share the mean
    residual variance) keeps planes random but aims them where the data spreads. Measured
    (full Hamming ranking, 256 bits, recall 0.95): re-rank depth 75 -> 45 at 1M x 512 and at
    100k x 4096. Exponents 0.5 and 1 were worse (0.5 slightly, 1 much).
    """
    k = min(SHAPE_K, len(vt))
    lam = np.maximum(lam[:k], lam_res)
    vk = vt[:k]
    gk = g @ vk.T  # components of each normal inside the top-k subspace
    w = (lam**0.25 / lam_res**0.25).astype(np.float32)
    return ((gk * w) @ vk + (g - gk @ vk)).astype(np.float32)


def sketch_step(coords: np.ndarray) -> np.ndarray:
    """int8 quantisation step per sketch coordinate: +-5 standard deviations span +-127."""
    sd = coords.std(axis=0) if len(coords) else np.ones(coords.shape[1], np.float32)
    sd[sd <= 0] = 1e-6
    return (5.0 * sd / 127.0).astype(np.float32)


def quantise(coords: np.ndarray, step: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(coords / step), -127, 127).astype(np.int8)


def ram_per_row(index: Tunable, b: int, L: int, m: int | None = None) -> float:
    """Index RAM per row for a layout: ids + alive + id map + codes + tables (rows and
    offsets) + sketch + de-duplication stamp (+ stored 1/norm when vectors are owned), plus
    the fixed arrays (planes, the sketch/refine basis: 8 MB at 4096 dims) spread over the
    rows as if there were at least FIXED_ROWS of them (in a small library they are a few MB
    in all). The refine codes are memory-mapped like the vectors and not counted here."""
    n, d, words = max(index.n_rows, 1), index.dim, index.words
    m = index.sketch_dims if m is None else m
    offs = 4 * L * ((1 << b) + 1) / n
    fixed = 4 * d * (64 * words + max(m, index.refine_dims)) / max(n, FIXED_ROWS)
    owned = 4 if index.owns_vectors else 0
    return 8 + 1 + 12 + 8 * words + 4 * L + offs + m + 4 + owned + fixed


def _layout_grid(index: Tunable) -> list[tuple[int, int]]:
    """(bits per table, tables) candidates: the size rule and up to three coarser ones."""
    p = index.params
    if p["table_bits"]:
        bs = [int(p["table_bits"])]
    else:
        b0 = int(np.clip(round(math.log2(max(index.n_rows, 2))), 6, 21))
        bs = [b for b in (b0, b0 - 2, b0 - 4, b0 - 6) if b >= 6] or [b0]
    return [(b, p["tables"] or (64 // b) * index.words) for b in bs]


def fit_sketch_dims(index: Tunable, m_max: int) -> int:
    """Largest sketch width (steps of 16, at least 16) for which some layout fits the RAM
    budget (ram_budget bytes per row); m_max when none would fit anyway."""
    grid = _layout_grid(index)
    m = m_max
    while m > 16:
        if min(ram_per_row(index, b, L, m) for b, L in grid) <= index.params["ram_budget"]:
            return m
        m -= 16
    return max(min(m_max, 16), 1)


def _layouts(index: Tunable) -> list[int]:
    """Bits-per-table values to calibrate: those of the grid that fit the RAM budget."""
    grid = _layout_grid(index)
    out = [b for b, L in grid if ram_per_row(index, b, L) <= index.params["ram_budget"]]
    return out or [min(grid, key=lambda bl: ram_per_row(index, *bl))[0]]


def exact_cost(index: Tunable) -> float:
    """Modelled seconds of one exact-scan query over the live rows."""
    return _COST_EXACT_QUERY + _COST_EXACT_ELEM * index.live * index.dim


def calibrate(index: Tunable, target: float) -> tuple[int, int, int, int, bool]:
    """Return (probes, sketch depth per 10 results, Hamming prefilter depth per 10 results
    or 0 for none, refine depth per 10 results or 0 for no refine stage, exact) for a built
    `index`; may re-bucket the tables with another bits-per-table value (index.table_bits)
    when that is cheaper. Without a refine stage the sketch depth rows are re-ranked exactly.

    `exact` True: an exact scan is modelled cheaper than every LSH setting that reaches the
    target (a small library, or one whose neighbours need most rows re-ranked), or none
    reaches it; the index then searches exactly (params["exact_fallback"] False: never).
    The exact scan's cost bounds the search, so hopeless probe budgets are never measured."""
    p = index.params
    fixed_pre, fixed_rf = p["prefilter"], p["refine"]
    if p["probes"] is not None and p["rerank"] is not None:
        return int(p["probes"]), int(p["rerank"]), int(fixed_pre or 0), int(fixed_rf or 0), False
    live = index.live
    fallback = bool(p.get("exact_fallback", True))
    # Cheaper than any LSH query's fixed cost: exact, without measuring anything.
    if fallback and exact_cost(index) <= _COST_LSH_QUERY:
        return int(p["probes"] or index.tables), int(p["rerank"] or 4 * CALIB_K), 0, 0, True
    if live <= 4 * CALIB_K:  # tiny: probe the home buckets, re-rank whatever they hold
        tiny = int(p["rerank"] or max(4 * CALIB_K, live))
        return int(p["probes"] or index.tables), tiny, 0, 0, False
    sample, qs, truth = _ground_truth(index, "calib")
    projs, codes = index.encode(qs)
    w, wr = index.sketch_weights(qs)
    stamp = np.zeros(index.n_rows, dtype=np.int32)
    row_cost = _COST_ROW + _COST_ELEM * index.dim
    cc = _COSTS_COMPILED if index.compiled else _COSTS_NUMPY
    sk_cost = cc["sk_row"] + cc["sk_elem"] * index.sketch_dims
    rf_cost = _COST_RF_ROW + _COST_RF_ELEM * index.refine_dims
    grid_r = _refine_grid(index, p)
    best = None  # (cost, b, probes, r, prefilter, refine); b None: the exact scan
    if fallback:  # the setting to beat: an exact scan (the LSH's fixed cost added to theirs)
        best = (exact_cost(index) - _COST_LSH_QUERY, None, 0, 0, 0, 0)
    widest = None  # (b, probes, deepest finite position)
    too_many = EXACT_SHARE * live if fallback else math.inf  # re-ranked rows: give up above
    for b in _layouts(index):
        if b != index.table_bits:
            index.relayout(b)
        grid = [int(p["probes"])] if p["probes"] else _probe_grid(index.tables, index.max_probes)
        per_bucket = live / (1 << index.table_bits)
        for n_probes in grid:
            floor = (cc["probe"] + cc["entry"] * per_bucket * 0.5) * n_probes
            if best is not None and floor > best[0]:
                break  # more probes (or coarser tables) only cost more from here on
            pres = [int(fixed_pre)] if fixed_pre is not None else list(_PREFILTERS)
            pos, pos2, n_ent, n_uni = _sketch_positions(
                index, projs, codes, (w, wr), truth, sample, n_probes, stamp, pres, grid_r
            )
            finite = pos[0][np.isfinite(pos[0])]
            widest = (b, n_probes, float(finite.max()) + 1 if finite.size else 0.0)
            gather = cc["probe"] * n_probes + cc["entry"] * n_ent + cc["unique"] * n_uni
            log.debug(
                "lsh calibration: b=%d probes=%d: %.0f entries, %.0f unique rows per query",
                *(b, n_probes, n_ent, n_uni),
            )
            if best is not None and gather > best[0]:
                break
            # candidates are most of the library: more probes only find the same rows again
            hopeless = fallback and n_uni >= HOPELESS_SHARE * live
            for pre, pp, pp2 in zip(pres, pos, pos2, strict=True):
                ranked = min(n_uni, pre) if pre else n_uni
                r_need = _depth_for_recall(pp, target)
                if fixed_rf:  # a forced refine depth: only refined choices below
                    r_need = math.inf
                if p["rerank"]:
                    r = int(p["rerank"])
                    ok = r_need <= r
                else:
                    r = max(CALIB_K, int(math.ceil(r_need))) if np.isfinite(r_need) else 0
                    ok = r > 0  # else too many neighbours unreachable with this many probes
                ok = ok and r <= too_many
                if ok and not (pre and pre < r):
                    cost = gather + sk_cost * ranked + row_cost * r
                    if best is None or cost < best[0]:
                        best = (cost, b, n_probes, r, pre, 0)
                for r, p2 in zip(grid_r, pp2, strict=True):  # sketch top r, refine top r2
                    if pre and pre < r:
                        continue
                    r2 = _depth_for_recall(p2, target)
                    if not np.isfinite(r2) or (fixed_rf and r2 > fixed_rf) or r2 > too_many:
                        continue
                    r2 = min(r, int(fixed_rf or max(CALIB_K, math.ceil(r2))))
                    sketch = sk_cost * ranked if ranked > r else 0.0
                    cost = gather + sketch + rf_cost * min(r, ranked) + row_cost * r2
                    if best is None or cost < best[0]:
                        best = (cost, b, n_probes, r, pre, r2)
            if hopeless:
                break
    if best is not None and best[1] is None:  # no LSH setting beats an exact scan
        log.info(
            "lsh calibration: an exact scan (%.2f ms modelled) is cheaper than any setting "
            "reaching recall %.3f at %d rows; searching exactly",
            *(exact_cost(index) * 1e3, target, live),
        )
        return int(p["probes"] or index.tables), int(p["rerank"] or 4 * CALIB_K), 0, 0, True
    if best is None:  # target out of reach: probe widest, re-rank everything it finds
        log.warning("lsh calibration could not reach recall %.3f; probing widest", target)
        b, n_probes, deepest = widest
        r = int(p["rerank"] or max(4 * CALIB_K, math.ceil(deepest)))
        best = (0.0, b, n_probes, r, 0, 0)
    if best[1] != index.table_bits:
        index.relayout(best[1])
    return best[2], best[3], best[4], best[5], False


def _refine_grid(index: Tunable, p: dict) -> tuple[int, ...]:
    """Sketch depths to try with the refine stage (none without refine codes)."""
    if not index.refine_dims or p["refine"] == 0:
        return ()
    if index.refine_dims <= index.sketch_dims and not p["refine"]:
        return ()  # the refine codes are a prefix of the sketch: they cannot re-order it better
    if p["rerank"]:
        return (int(p["rerank"]),)
    return _REFINE_GRID


def _ground_truth(index: Tunable, which: str = "calib"):
    """(rows, unit vectors, exact 10-NN with self excluded) of the calibration sample or of
    the held-out verification sample (other rows where the library is large enough). Both
    samples share one exact pass, the dominant build cost (n_q x n x dim multiply-adds); it
    is cached until the index next changes, so `tune()` for another target is quick."""
    live = index.live
    n_c = min(int(index.params["calib_queries"]), live)
    n_v = min(int(index.params["verify_queries"]), live)
    key = (index.state_key, n_c, n_v)
    cached = index.truth_cache
    if cached is None or cached[0] != key:
        rng = np.random.default_rng(index.seed + 1)
        pool = index.live_rows()
        calib = np.sort(rng.choice(pool, n_c, replace=False))
        if live - n_c >= n_v:
            pool = np.setdiff1d(pool, calib)
        verify = np.sort(rng.choice(pool, n_v, replace=False))
        both = np.concatenate([calib, verify])
        qs = index.unit_rows(both)
        truth, _ = index.exact_knn(qs, CALIB_K, exclude=both)
        sets = {
            "calib": (calib, qs[:n_c], truth[:n_c]),
            "verify": (verify, qs[n_c:], truth[n_c:]),
        }
        index.truth_cache = cached = (key, sets)
    return cached[1][which]


def verify_recall(index: Tunable) -> dict[str, float]:
    """Recall@10 of the real query path on held-out stored rows (not the calibration rows,
    where the library is large enough), each excluded from its own results, against exact
    search."""
    if index.live < 2:
        return {"recall_at_10": 1.0, "queries": 0, "stderr": 0.0}
    sample, qs, truth = _ground_truth(index, "verify")
    projs, codes = index.encode(qs)
    got = index.search(qs, projs, codes, CALIB_K, sample)
    hits = []
    for (rows, _), t in zip(got, truth, strict=True):
        t = t[t >= 0]
        if len(t):
            hits.append(len(np.intersect1d(rows, t)) / len(t))
    if not hits:
        return {"recall_at_10": 1.0, "queries": 0, "stderr": 0.0}
    se = float(np.std(hits) / math.sqrt(len(hits)))
    return {"recall_at_10": float(np.mean(hits)), "queries": len(hits), "stderr": se}


def _sketch_positions(index, projs, codes, ws, truth, sample, n_probes, stamp, prefilters, grid):
    """For each prefilter depth (0: none), the (n_q, 10) sketch-order ranks of each true
    neighbour among the candidates the prefilter keeps (inf: not kept); for each prefilter
    and each sketch depth r in `grid`, its refine-order rank among the sketch's top r (inf:
    not among them); and the mean number of candidate entries and of unique candidates per
    query."""
    n_q = len(projs)
    w, wr = ws
    pos = [np.full(truth.shape, np.inf) for _ in prefilters]
    pos2 = [[np.full(truth.shape, np.inf) for _ in grid] for _ in prefilters]
    r_max = max(grid, default=0)
    n_uni = np.zeros(n_q)
    n_ent = index.entries(projs, codes, n_probes)
    for j, c, h in index.candidate_sets(projs, codes, n_probes, sample):
        n_uni[j] = len(c)
        if len(c) == 0:
            continue
        s = index.sketch_scores(c, w[j])
        t = truth[j]
        ok = np.flatnonzero(t >= 0)
        stamp[c] = np.arange(len(c), dtype=np.int32)
        at = stamp[t[ok]]
        at[(at >= len(c)) | (at < 0)] = 0
        hit = c[at] == t[ok]
        at, cols = at[hit], ok[hit]
        if len(at) == 0:
            continue
        above = s[None, :] > s[at][:, None]  # (hits, C)
        f = np.full(len(c), np.nan, np.float32) if grid else None  # refine scores, lazily
        whole = None  # the ranks of a prefilter that keeps every candidate (computed once:
        # every depth at or above len(c) gives the same, and most do on a small library)
        for i, pre in enumerate(prefilters):
            if pre and len(c) > pre:
                keep = np.zeros(len(c), bool)
                keep[np.argpartition(h, pre - 1)[:pre]] = True
                inside = keep[at]
                pos[i][j, cols[inside]] = (above[inside] & keep).sum(axis=1)
            elif whole is not None:
                pos[i][j, cols] = pos[whole][j, cols]
                for g in range(len(grid)):
                    pos2[i][g][j, cols] = pos2[whole][g][j, cols]
                continue
            else:
                keep, inside, whole = None, np.ones(len(at), bool), i
                pos[i][j, cols] = above.sum(axis=1)
            if grid and inside.any():
                ranks = _refine_ranks(index, c, s, f, wr[j], keep, at[inside], grid, r_max)
                for g, rank in enumerate(ranks):
                    pos2[i][g][j, cols[inside]] = rank
    return pos, pos2, float(n_ent), float(n_uni.mean()) if n_q else 0.0


def _refine_ranks(index, c, s, f, wr, keep, at, grid, r_max) -> list[np.ndarray]:
    """Refine-order ranks of the hits `at` among the sketch's top r of the kept candidates
    (`keep`: mask, None = all), one array per r in grid (inf where a hit is not in that
    top r). `f` caches refine scores of c (nan: not yet computed)."""
    kept = np.flatnonzero(keep) if keep is not None else np.arange(len(c))
    if len(kept) > r_max:  # the sketch's top r_max only (O(C), not a full sort)
        kept = kept[np.argpartition(-s[kept], r_max - 1)[:r_max]]
    order = kept[np.argsort(-s[kept], kind="stable")]
    need = np.concatenate([order, at])
    need = need[np.isnan(f[need])]
    if len(need):
        f[need] = index.refine_scores(c[need], wr)
    sk_rank = np.full(len(c), np.iinfo(np.int64).max)
    sk_rank[order] = np.arange(len(order))
    cum = np.cumsum(f[order][None, :] > f[at][:, None], axis=1)  # (hits, len(order))
    out = []
    for r in grid:
        got = np.full(len(at), np.inf)
        sel = sk_rank[at] < r
        got[sel] = cum[sel, min(r, len(order)) - 1]
        out.append(got)
    return out


def _depth_for_recall(pos: np.ndarray, target: float) -> float:
    """Smallest re-rank depth R whose recall over the calibration queries, minus CALIB_SE
    standard errors of the per-query mean (neighbours of one query are correlated, so the per-query
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
        if per_q.mean() - CALIB_SE * per_q.std() / math.sqrt(nq) >= target:
            best, hi = r, mid - 1
        else:
            lo = mid + 1
    return best


def _probe_grid(lo: int, hi: int) -> list[int]:
    """Probe budgets from lo to hi in steps of sqrt(2): lo * 2**(i/2), rounded, so every
    other one is the old doubling grid's (doubling over-shot the target by up to twice the
    candidates, the dominant cost where many probes are needed)."""
    out, i = [lo], 1
    while out[-1] < hi:
        out.append(min(hi, max(out[-1] + 1, int(round(lo * 2 ** (i / 2))))))
        i += 1
    return out

"""The LSH index's query engine (a mixin of LSHIndex, split from lsh.py by concern): probe
keys, bucket gathers, de-duplication, the Hamming prefilter, the sketch ranking and the exact
re-rank, for one query or many. It reads the structures `LSHIndex.build` makes (codes, hash
tables, sketch, planes) and changes none of them; the algorithm is described in lsh.py.

One engine serves single and batched queries (a single query is a batch of one), so both
return the same rows in the same order. Per block of queries: one projection (GEMM), probe
keys and bucket offsets for every query at once, one ragged gather of all candidate rows,
one de-duplication, row-wise selections over a padded (queries x candidates) matrix for the
prefilter and the sketch top-R, the refine top-R2 from the memory-mapped int8 refine codes,
then one gather + widen + dot for the exact re-rank of those R2 rows.

The candidate stage (bucket gather, de-duplication, Hamming prefilter, sketch top-R) has a
second, compiled engine (`_numba_kernels.candidate_block`, loaded by `_numba`; see
`_engine` for when): one loop per query instead of the passes above, returning the same
rows in the same order (sketch weights are integers, `_integer_weights`, so sketch scores
are exact in both). The numpy engine stays the reference and the fallback.
"""

from __future__ import annotations

import math

import numpy as np

from . import _numba
from ._kernels import F16_SCALE, brute_force_knn, hamming_many, hamming_rows, matvec, widen_f16
from ._lsh_tune import CALIB_K


class LSHSearch:
    """Query methods of LSHIndex (see the module docstring)."""

    _force_numpy = False  # True: never the compiled engine (tests compare the two)
    _COMPILED_WORK = 1 << 24  # queries x rows of a batch that loads the compiled kernels

    # Block sizes: small enough for the gathered codes to stay in cache (measured CPU ms per
    # query, broad clusters 20k x 512: 0.53 with 2M-entry gathers, 0.40 with 128k).
    _PROBE_CHUNK = 32  # queries per vectorised probe-key block
    _GATHER_ENTRIES = 1 << 17  # candidate entries per ragged gather
    _RERANK_ELEMS = 1 << 23  # float16 elements per re-rank block (one sort)
    _WIDEN_ELEMS = 1 << 17  # ... of which gathered and widened at a time (L2-sized)
    _SKETCH_ELEMS = 1 << 21  # sketch bytes per batched sketch gather

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

    def _probe_ranges(self, projs, qcodes, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
        """(first entry in rows_flat, length) of every probed bucket, (Q, probes) int64 each."""
        tab, keys = self._probe_keys(projs, qcodes, n_probes)
        slot = tab * self._offs_stride + keys
        starts = self._offs_flat[slot].astype(np.int64)
        lens = self._offs_flat[slot + 1] - starts
        starts += tab * self._rows_stride
        return starts, lens

    def _gather(self, projs, qcodes, n_probes: int, with_ham: bool = True):
        """Candidate entries (with repeats) of every query: flat rows (int32), their Hamming
        distance to the query's code (uint16, one vectorised pass; None unless `with_ham`),
        and the end of each query's entries."""
        nq = len(projs)
        rows_out, ham_out, ends_out, base = [], [], [], 0
        for lo in range(0, nq, self._PROBE_CHUNK):
            hi = min(nq, lo + self._PROBE_CHUNK)
            shift, lens = self._probe_ranges(projs[lo:hi], qcodes[lo:hi], n_probes)
            shift, lens = shift.ravel(), lens.ravel()
            ends = np.cumsum(lens)
            total = int(ends[-1]) if len(ends) else 0
            q_ends = ends.reshape(hi - lo, -1)[:, -1]
            if total:
                # int32 offsets where the tables allow (half the traffic of int64)
                small = self._rows_flat.size < 2**31
                dt = np.int32 if small else np.int64
                idx = np.repeat((shift - (ends - lens)).astype(dt), lens)
                idx += self._scratch.arange(total) if small else np.arange(total, dtype=dt)
                rows = np.take(self._rows_flat, idx)
                per_q = np.diff(q_ends, prepend=0)
                rows_out.append(rows)
                if with_ham:
                    ham_out.append(hamming_many(self._codes.view, rows, qcodes[lo:hi], per_q))
            ends_out.append(q_ends + base)
            base += total
        ends = np.concatenate(ends_out)
        if not rows_out:
            return np.zeros(0, np.int32), np.zeros(0, np.uint16) if with_ham else None, ends
        if len(rows_out) == 1:  # one probe chunk (the block engine's case): no copy
            return rows_out[0], ham_out[0] if with_ham else None, ends
        ham = np.concatenate(ham_out) if with_ham else None
        return np.concatenate(rows_out), ham, ends

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
            hi = lo + self._PROBE_CHUNK
            tot += int(self._probe_ranges(projs[lo:hi], qcodes[lo:hi], n_probes)[1].sum())
        return tot / max(len(projs), 1)

    def _pre_depth(self, k: int) -> int:
        """Rows kept by the Hamming prefilter for k results (0: no prefilter)."""
        if not self._prefilter:
            return 0
        return max(self._depth(k), math.ceil(self._prefilter * max(k, CALIB_K) / CALIB_K))

    def _depth(self, k: int) -> int:
        return max(k, math.ceil(self._rerank * max(k, CALIB_K) / CALIB_K))

    def _refine_depth(self, k: int) -> int:
        """Rows the refine codes pass on to the exact re-rank (0: no refine stage)."""
        if not (self._refine and self._rf_m):
            return 0
        return min(self._depth(k), max(k, math.ceil(self._refine * max(k, CALIB_K) / CALIB_K)))

    def _sketch_query(self, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-query weights with code . w ~ (row - mean) . q for the sketch ((Q, m)) and for
        the refine codes ((Q, m_r)), from one product with the shared basis (float32). The
        sketch weights are integers (`_integer_weights`), so sketch scores are exact integers
        whatever the order of their sums: both engines (numpy, compiled) get the same."""
        if len(qs) == 1:
            c = (matvec(self._sk_basis, qs[0]) * self._sk_step)[None, :]
        else:
            c = (qs @ self._sk_basis.T) * self._sk_step
        return _integer_weights(c[:, : self._sk_m]), np.ascontiguousarray(c[:, : self._rf_m])

    def _refine_scores(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Refine-code scores (float32) of `rows` for one query's refine weights."""
        g = self._refine_codes.take(rows).astype(np.float32)
        return np.vecdot(g, w[None, :]) if len(rows) else np.zeros(0, np.float32)

    def _refine_select(self, sel: np.ndarray, wr: np.ndarray, k: int) -> np.ndarray:
        """(Q, R2) of each query's selected rows (-1: padding), the R2 best by refine-code
        score, in their order in `sel` (ties broken by that position, as in the sketch)."""
        nq, c = sel.shape
        r2 = self._refine_depth(k)
        if not r2 or c <= r2:
            return sel
        out = np.empty((nq, r2), np.int64)
        step = max(1, self._SKETCH_ELEMS // max(1, c * self._rf_m))
        ties = np.arange(c) * 1e-13
        for lo in range(0, nq, step):
            hi = min(nq, lo + step)
            rows = sel[lo:hi]
            g = self._refine_codes.take(np.maximum(rows, 0).ravel()).astype(np.float32)
            s = np.vecdot(g.reshape(hi - lo, c, self._rf_m), wr[lo:hi, None, :])
            s = s.astype(np.float64)
            s[rows < 0] = -np.inf
            s -= ties
            top = np.sort(np.argpartition(-s, r2 - 1, axis=1)[:, :r2], axis=1)
            out[lo:hi] = np.take_along_axis(rows, top, axis=1)
        return out

    def _sketch_scores(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        g8 = self._scratch.get("sk8", (len(rows), self._sk_m), np.int8)
        np.take(self._sketch.view, rows, axis=0, out=g8, mode="clip")  # rows are live rows
        g = self._scratch.get("sk32", (len(rows), self._sk_m), np.float32)
        np.copyto(g, g8, casting="unsafe")
        return matvec(g, w)

    def _query_rows(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return next(self._query_rows_batch(q[None, :], k))

    def _query_rows_batch(self, qs: np.ndarray, k: int, exclude=None):
        if self._exact_mode:
            yield from self._exact_many(qs, k, exclude)
            return
        projs = self._project(qs[0])[None, :] if len(qs) == 1 else self._project(qs)
        yield from self._search_many(qs, projs, self._pack(projs), k, exclude)

    def _exact_many(self, qs: np.ndarray, k: int, exclude=None):
        """Exact search (the mode calibration falls back to): every live row scored, each
        query by its own unthreaded dot products (`per_query`), so a query gets the same
        rows and scores alone or in any batch; rows are streamed once per block of queries."""
        step = 256
        for lo in range(0, len(qs), step):
            ex = None if exclude is None else np.asarray(exclude[lo : lo + step], np.int64)
            rows, scores = brute_force_knn(
                self._n_rows,
                self._fetch_block,
                qs[lo : lo + step],
                k,
                alive=self._alive.view,
                exclude=ex,
                row_scale=self._row_scale(),
                per_query=True,
            )
            for r, sc in zip(rows, scores, strict=True):
                ok = np.isfinite(sc)
                yield r[ok], sc[ok]

    def _search_many(self, qs, projs, qcodes, k: int, exclude=None):
        """Yield (rows, exact cosine) best first for every query (rows exclude `exclude[j]`).

        Vectorised over blocks of queries, with no Python loop per query: one ragged gather,
        one de-duplication per block, then the Hamming prefilter and the sketch top-R as
        row-wise selections over a padded (queries x candidates) matrix. Ties are broken by
        a candidate's position in its own query's list, so a query gets the same rows alone
        or in any batch. Queries whose buckets hold fewer than twice the re-rank depth are
        probed again, together, with doubled budgets; a query left with fewer than k
        candidates at the widest budget ranks every row by its sketch (`_select_all`)."""
        if self._exact_mode:
            yield from self._exact_many(qs, k, exclude)
            return
        nq = len(qs)
        depth = self._depth(k)
        w, wr = self._sketch_query(qs)
        sel = np.full((nq, depth), -1, np.int64)
        todo, p = np.arange(nq), self._probes
        kern = self._engine(nq)
        wq = w.astype(np.int32) if kern is not None else None
        while len(todo):
            last = p >= self._max_probes
            per_probe = max(1.0, self._live / (1 << self._b))
            step = max(1, int(self._GATHER_ENTRIES // max(1.0, p * per_probe)))
            step = min(step, self._PROBE_CHUNK, len(todo))
            if kern is not None:  # bounded per query, not per block: no gather to size
                step = min(self._PROBE_CHUNK, len(todo))
            seen = self._scratch.get("seen", (self._n_rows,), np.int32)
            again = []
            for lo in range(0, len(todo), step):
                js = todo[lo : lo + step]
                ex = None if exclude is None else np.asarray(exclude, np.int64)[js]
                if kern is not None:
                    block, counts = self._select_compiled(
                        kern, projs[js], qcodes[js], p, ex, wq[js], k, seen
                    )
                else:
                    flat, _, ends = self._gather(projs[js], qcodes[js], p, False)
                    rows, qid, counts = self._dedup_block(flat, ends, ex, seen)
                    block = self._select_block(rows, qid, counts, qcodes[js], w[js], k)
                avail = self._live - (0 if ex is None else (ex >= 0))
                short = (counts < 2 * depth) & (counts < avail)
                sel[js] = -1
                sel[js, : block.shape[1]] = block
                if not last:
                    again.append(js[short])
                else:
                    for j in js[counts < np.minimum(k, avail)]:
                        sel[j] = self._select_all(w, int(j), k, exclude)
            todo = np.concatenate(again) if again else todo[:0]
            p = min(2 * p, self._max_probes)
        yield from self._rerank_many(self._refine_select(sel, wr, k), qs, k)

    def _engine(self, nq: int):
        """The compiled kernels (`_numba`) or None for the numpy engine. Once loaded they
        serve every query. A batch large enough to pay for loading them (queries x rows >=
        _COMPILED_WORK: the duplicate scan's 2,048-photo chunks from ~8k photos, the build's
        256-row recall check from ~65k, where a build takes tens of seconds; loading takes
        0.6 s CPU from the cache, about 6.5 s to compile once per machine) loads them;
        anything smaller runs on numpy."""
        if not self._can_compile():
            return None
        return _numba.get(wait=nq * self._live >= self._COMPILED_WORK)

    def _can_compile(self) -> bool:
        """Whether queries run on the compiled engine once it is loaded: numba usable, not
        forced off, and int32 table rows (an index of 2**31+ table entries stays on numpy;
        an index not built yet has no tables to check)."""
        rows = getattr(self, "_rows_flat", None)
        small = rows is None or rows.dtype == np.int32
        return not self._force_numpy and small and _numba.enabled()

    def _select_compiled(self, kern, projs, qcodes, n_probes: int, exclude, wq, k: int, seen):
        """What `_gather` + `_dedup_block` + `_select_block` return (the (Q, depth) rows to
        re-rank, -1 padding, and the unique candidates per query), from one compiled pass
        per query over its probed buckets (`_numba_kernels.candidate_block`)."""
        nq, depth, pre = len(projs), self._depth(k), self._pre_depth(k)
        starts, lens = self._probe_ranges(projs, qcodes, n_probes)
        pending = self._n_rows - self._n_tabled
        per_q = int(lens.sum(axis=1).max(initial=0)) + pending
        sc = self._scratch
        out = np.full((nq, depth), -1, np.int64)
        counts = np.zeros(nq, np.int64)
        kern.candidate_block(
            starts,
            lens,
            self._rows_flat,
            self._codes.view,
            np.ascontiguousarray(qcodes),
            self._n_tabled,
            self._n_rows,
            self._alive.view,
            self._live != self._n_rows,
            np.full(nq, -1, np.int64) if exclude is None else exclude,
            seen,
            pre,
            depth,
            self._sketch.view,
            wq,
            sc.get("nb_r", (per_q,), np.int32),
            sc.get("nb_h", (per_q,), np.int32),
            sc.get("nb_c", (per_q,), np.int32),
            sc.get("nb_k", (per_q,), np.int64),
            out,
            counts,
        )
        return out, counts

    def _dedup_block(self, flat, ends, exclude, seen):
        """Unique live (query, row) entries of a block of queries, pending rows included:
        (rows int32, query number int32, count per query), grouped by query, each query's
        in the order of its entries (of repeated entries the last is kept)."""
        nq = len(ends)
        qid = np.repeat(np.arange(nq, dtype=np.int32), np.diff(ends, prepend=0))
        pending = self._n_rows - self._n_tabled
        if pending:
            xr = np.tile(np.arange(self._n_tabled, self._n_rows, dtype=np.int32), nq)
            qid = np.concatenate([qid, np.repeat(np.arange(nq, dtype=np.int32), pending)])
            order = np.argsort(qid.astype(np.uint16), kind="stable")  # radix sort
            flat, qid = np.concatenate([flat, xr])[order], qid[order]
        if len(flat) == 0:
            return flat.astype(np.int32), qid, np.zeros(nq, np.int64)
        # O(E): stamp each row with its entry's (global) position and keep the entries that
        # still hold their own stamp, one query at a time: one n-row stamp array stays in
        # cache, where a (query, row) array for the whole block would not (measured: 1.3-1.8x
        # slower at 100k rows). Never cleared: a stale value is older than the query that
        # reads it, so it never equals one of that query's positions.
        pos = self._scratch.arange(len(flat))
        keep = np.empty(len(flat), bool)
        if pending:
            bounds = np.searchsorted(qid, np.arange(nq + 1))
        else:
            bounds = np.concatenate([[0], ends])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if b > a:
                f, p = flat[a:b], pos[a:b]
                seen[f] = p
                np.equal(seen[f], p, out=keep[a:b])
        if self._live != self._n_rows:
            keep &= self._alive.view[flat]
        if exclude is not None:
            keep &= flat != exclude[qid]
        # counts from a running sum of `keep` and query numbers re-made from them: cheaper
        # than compressing the query numbers and counting them (bincount)
        kept = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        counts = kept[bounds[1:]] - kept[bounds[:-1]]
        return flat[keep], np.repeat(np.arange(nq, dtype=np.int32), counts), counts

    def _select_block(self, rows, qid, counts, qcodes, w, k: int) -> np.ndarray:
        """(Q, <= depth) rows for the exact re-rank (-1: padding): per query the `pre` best
        by Hamming distance, of those the `depth` best by sketch score."""
        nq, depth, pre = len(counts), self._depth(k), self._pre_depth(k)
        width = int(counts.max(initial=0))
        if width == 0:
            return np.full((nq, 0), -1, np.int64)
        starts = np.cumsum(counts) - counts
        entry = np.arange(len(rows), dtype=np.int64)
        slot = entry + np.repeat(np.arange(nq, dtype=np.int64) * width - starts, counts)
        cols = None  # column (= position in the query's own list) of every kept entry
        if pre and width > pre:
            buf = self._scratch.get("ham", (len(rows), self._W), np.uint64)
            ham = hamming_many(self._codes.view, rows, qcodes, counts, buf)  # unique rows only
            # Key: Hamming distance, then the entry number (in position order within a
            # query, so ties go by position); the `pre` smallest per query are kept and
            # their rows read back through the entry number (no padded row matrix).
            pad = np.iinfo(np.int64).max
            key = np.full(nq * width, pad, np.int64)
            entry |= ham.astype(np.int64) << 32
            key[slot] = entry
            kept = np.partition(key.reshape(nq, width), pre - 1, axis=1)[:, :pre]
            real = kept != pad
            at = np.where(real, kept & 0xFFFFFFFF, 0)
            mat = np.where(real, rows[at], -1).astype(np.int64)
            cols = np.where(real, at - starts[:, None], width)  # padding last
        else:
            mat = np.full(nq * width, -1, np.int64)
            mat[slot] = rows
            mat = mat.reshape(nq, width)
        if mat.shape[1] > depth:
            if cols is None:
                cols = np.broadcast_to(np.arange(mat.shape[1]), mat.shape)
            # Key: the (exact, integer) sketch score, then the smaller position; padding last.
            key = self._sketch_block(mat, w).astype(np.int64) << 32
            key |= 0xFFFFFFFF - cols
            key[mat < 0] = np.iinfo(np.int64).min
            top = np.argpartition(key, key.shape[1] - depth, axis=1)[:, -depth:]
            mat = np.take_along_axis(mat, top, axis=1)
            cols = np.take_along_axis(cols, top, axis=1)
        if cols is not None:  # canonical order (by position), as the re-rank sort is stable
            order = np.argsort(cols, axis=1)
            mat = np.take_along_axis(mat, order, axis=1)
        return mat

    def _sketch_block(self, mat: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Sketch scores (float64 (Q, C)) of the rows in mat (-1: any value) for weights w."""
        nq, c = mat.shape
        out = np.empty((nq, c), np.float64)
        step = max(1, self._SKETCH_ELEMS // max(1, c * self._sk_m))
        safe = np.maximum(mat, 0)
        for lo in range(0, nq, step):
            hi = min(nq, lo + step)
            g8 = np.take(self._sketch.view, safe[lo:hi].ravel(), axis=0)
            g = g8.astype(np.float32).reshape(hi - lo, c, self._sk_m)
            out[lo:hi] = np.matmul(g, w[lo:hi, :, None])[:, :, 0]
        return out

    def _select_all(self, w, j: int, k: int, exclude) -> np.ndarray:
        """Rows to re-rank for a query whose widest probing found fewer than k rows (large k
        or a tiny index): every live row, the `depth` best by sketch score."""
        depth = self._depth(k)
        ex = -1 if exclude is None else int(exclude[j])
        c = np.flatnonzero(self._alive.view).astype(np.int32)
        if ex >= 0:
            c = c[c != ex]
        if len(c) > depth:
            s = self._sketch_scores(c, w[j])
            c = np.sort(c[np.argpartition(-s, depth - 1)[:depth]])
        out = np.full(depth, -1, np.int64)
        out[: len(c)] = c
        return out

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
            # Gather, widen and dot a few queries' rows at a time, so the float16 rows and
            # their widened copy stay in the core's L2 cache (measured: 25% less CPU per
            # query than one 48 MB gather per block, the widen passes going to memory).
            per = max(1, self._WIDEN_ELEMS // max(1, r * self._dim))
            s = np.empty((qc, r), np.float32)
            n = min(qc, per) * r
            g = self._scratch.get("g16", (n, self._dim), np.float16)
            w32 = self._scratch.get("w32", (n, self._dim), np.int32)
            qsc = qs * F16_SCALE
            for lo in range(0, qc, per):
                hi = min(qc, lo + per)
                m = (hi - lo) * r
                self._store.take(flat[lo * r : hi * r], out=g[:m])
                wide = widen_f16(g[:m], w32[:m])
                s[lo:hi] = np.vecdot(wide.reshape(hi - lo, r, self._dim), qsc[lo:hi, None, :])
            return s * self._store.inv_norm[flat].reshape(qc, r)
        if callable(getattr(self._source, "take_f16", None)):
            return self._source_scores(flat, qs, r)
        got = self._fetch_rows(flat)  # a source's rows (the app's: centred float32)
        if got.dtype == np.float16:
            x = widen_f16(got) * F16_SCALE
        else:
            x = got.astype(np.float32, copy=False)  # no copy of float32 rows
        norms = np.sqrt(np.vecdot(x, x))
        norms[norms == 0] = 1.0
        return np.vecdot(x.reshape(qc, r, self._dim), qs[:, None, :]) / norms.reshape(qc, r)

    def _source_scores(self, flat: np.ndarray, qs: np.ndarray, r: int) -> np.ndarray:
        """Cosines of a source's rows in the fast form (base.py: `take_f16` + `shift`): a few
        queries' float16 rows at a time gathered into a reused buffer, widened, shifted and
        dotted while they are in the L2 cache, as for owned rows; the same arithmetic as
        `source.get` + normalise (bit for bit), without a float32 copy of the block."""
        qc = len(qs)
        per = max(1, self._WIDEN_ELEMS // max(1, r * self._dim))
        n = min(qc, per) * r
        g = self._scratch.get("g16", (n, self._dim), np.float16)
        w32 = self._scratch.get("w32", (n, self._dim), np.int32)
        ids = self._row_ids.view[flat]
        s = np.empty((qc, r), np.float32)
        for lo in range(0, qc, per):
            hi = min(qc, lo + per)
            x = self._source_rows(ids[lo * r : hi * r], g, w32)  # base.py
            norms = np.sqrt(np.vecdot(x, x))
            norms[norms == 0] = 1.0
            dots = np.vecdot(x.reshape(hi - lo, r, self._dim), qs[lo:hi, None, :])
            s[lo:hi] = dots / norms.reshape(hi - lo, r)
        return s


# Sum of |w| per query for the integer sketch weights: every partial sum of int8 codes
# (|c| <= 127) times them stays below 2**24, so float32 products are exact integers in any
# order (BLAS, SIMD, the compiled kernel's int64 loop). About 10 bits per weight at 128
# dimensions, finer than the int8 codes they multiply.
_SK_L1 = 131_000


def _integer_weights(c: np.ndarray) -> np.ndarray:
    """(Q, m) float32 integer-valued weights proportional to c (per query), sum |w| <=
    _SK_L1 + m / 2."""
    l1 = np.abs(c).sum(axis=1, dtype=np.float64, keepdims=True)
    scale = np.divide(_SK_L1, l1, out=np.ones_like(l1), where=l1 > 0)
    return np.ascontiguousarray(np.rint(c * scale).astype(np.float32))


def _subsets(m: int) -> np.ndarray:
    """All 2**m subsets of m items as a 0/1 float32 matrix, the empty set first."""
    cache = _SUBSETS.get(m)
    if cache is None:
        cache = ((np.arange(1 << m)[:, None] >> np.arange(m)) & 1).astype(np.float32)
        _SUBSETS[m] = cache
    return cache


_SUBSETS: dict[int, np.ndarray] = {}

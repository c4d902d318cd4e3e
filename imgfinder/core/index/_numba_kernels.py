"""Compiled (numba) kernels of the LSH candidate stage. Imported only through `_numba.load`
(which sets numba's cache directory first); never at `import imgfinder` time.

`candidate_block` does, per query of a block and in one pass over its entries, what the
numpy engine (`_lsh_search.LSHSearch._gather` / `_dedup_block` / `_select_block`) does in a
dozen vectorised passes with their temporaries: walk the probed buckets' CSR ranges, keep
the last entry of every repeated row (a stamp array), drop dead and excluded rows, compute
the Hamming distance of each kept row's code to the query's, keep the `pre` best by
(distance, position) with a counting selection over the 0..B distances (O(C), no sort),
score those by the int8 sketch against integer query weights (exact int64 sums, so the
same values as the numpy engine's float32 products whatever their order) and keep the
`depth` best by (score, position). Same rows, same order as the numpy engine, bit for bit.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit
from numba import types as T
from numba.core import cgutils
from numba.extending import intrinsic

# Rows ahead whose code / sketch line is prefetched: the candidate loops are a stream of
# independent random reads (1M x 32-byte codes, 128-byte sketch rows), latency-bound without
# it (measured at 1M rows: 16k sketch rows 3.0 -> 1.8 ms, 86k Hamming codes 1.6 -> 1.4 ms).
_AHEAD = 16


@intrinsic
def _prefetch_row(typingctx, arr, i):
    """Prefetch the first cache line of row i of a 2-D array (llvm.prefetch, read, keep)."""
    sig = T.void(arr, i)

    def codegen(context, builder, signature, args):
        aryty, ity = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], ity, T.intp)
        zero = context.get_constant(T.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx, zero])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


def _ro(dtype, ndim):
    """A read-only C-contiguous array type: writable arrays convert to it, so one compiled
    version serves a freshly built index (writable arrays) and a loaded one (memory-mapped)."""
    return T.Array(dtype, ndim, "C", readonly=True)


def _rw(dtype, ndim):
    return T.Array(dtype, ndim, "C")


_I64, _I32, _U64 = T.int64, T.int32, T.uint64
# One signature (compiled once per machine, then loaded from the cache): int32 table rows,
# which every table below 2**31 entries has (`_lsh_search._engine` keeps larger ones on the
# numpy engine).
_SIG = T.void(
    _ro(_I64, 2),
    _ro(_I64, 2),
    _ro(_I32, 1),
    _ro(_U64, 2),
    _ro(_U64, 2),
    _I64,
    _I64,
    _ro(T.boolean, 1),
    T.boolean,
    _ro(_I64, 1),
    _rw(_I32, 1),
    _I64,
    _I64,
    _ro(T.int8, 2),
    _ro(_I32, 2),
    _rw(_I32, 1),
    _rw(_I32, 1),
    _rw(_I32, 1),
    _rw(_I64, 1),
    _rw(_I64, 2),
    _rw(_I64, 1),
)

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(nogil=True, cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return (x * _H01) >> np.uint64(56)


@njit([_SIG], nogil=True, cache=True)
def candidate_block(
    starts,  # (Q, P) int64: first entry of each probed bucket in rows_flat
    lens,  # (Q, P) int64: its length
    rows_flat,  # int32 table rows, all tables back to back
    codes,  # (n, W) uint64
    qcodes,  # (Q, W) uint64
    pend_lo,  # pending (un-bucketed) rows pend_lo..pend_hi-1 are every query's candidates too
    pend_hi,
    alive,  # (n,) bool
    check_alive,
    exclude,  # (Q,) int64, -1: none
    seen,  # (n,) int32 stamp scratch (never cleared; see _lsh_search._dedup_block)
    pre,  # Hamming prefilter depth (0: none)
    depth,  # sketch depth: rows passed on
    sketch,  # (n, m) int8
    wq,  # (Q, m) int32 integer sketch weights
    buf_r,  # scratch int32 (>= entries of one query)
    buf_h,  # scratch int32 (>= entries of one query)
    buf_c,  # scratch int32
    buf_k,  # scratch int64
    out,  # (Q, depth) int64, filled with -1 by the caller
    counts,  # (Q,) int64 out: unique live candidates per query
):
    nq, n_probe = starts.shape
    n_words = codes.shape[1]
    m = sketch.shape[1]
    hist = np.zeros(n_words * 64 + 2, np.int64)
    for j in range(nq):
        # pass 1: stamp every entry's row with the entry's position
        p = 0
        for t in range(n_probe):
            s0 = starts[j, t]
            for e in range(s0, s0 + lens[j, t]):
                seen[rows_flat[e]] = p
                p += 1
        for r in range(pend_lo, pend_hi):
            seen[r] = p
            p += 1
        # pass 2: entries that still hold their own stamp, live and not excluded (written
        # always, counted when kept: no branch to mispredict)
        ex = exclude[j]
        p = 0
        c = 0
        for t in range(n_probe):
            s0 = starts[j, t]
            for e in range(s0, s0 + lens[j, t]):
                r = rows_flat[e]
                buf_r[c] = r
                c += (seen[r] == p) & (r != ex) & (alive[r] or not check_alive)
                p += 1
        for r in range(pend_lo, pend_hi):
            buf_r[c] = r
            c += (seen[r] == p) & (r != ex) & (alive[r] or not check_alive)
            p += 1
        # pass 3: Hamming distances, a loop of independent loads (their cache misses overlap)
        hist[:] = 0
        for i in range(c):
            if i + _AHEAD < c:
                _prefetch_row(codes, buf_r[i + _AHEAD])
            r = buf_r[i]
            h = 0
            for w in range(n_words):
                h += _popcount(codes[r, w] ^ qcodes[j, w])
            buf_h[i] = h
        for i in range(c):
            hist[buf_h[i]] += 1
        counts[j] = c
        # Hamming prefilter: the `pre` smallest (distance, position)
        if pre > 0 and c > pre:
            acc = 0
            thr = 0
            while acc + hist[thr] < pre:
                acc += hist[thr]
                thr += 1
            at_thr = pre - acc
            n2 = 0
            for i in range(c):
                h = buf_h[i]
                if h < thr or (h == thr and at_thr > 0):
                    if h == thr:
                        at_thr -= 1
                    buf_r[n2] = buf_r[i]
                    buf_c[n2] = i
                    n2 += 1
        else:
            n2 = c
            for i in range(c):
                buf_c[i] = i
        if n2 <= depth:
            for i in range(n2):
                out[j, i] = buf_r[i]
            continue
        # sketch: the `depth` best (score, then the smaller position), in position order
        for i in range(n2):
            if i + _AHEAD < n2:
                _prefetch_row(sketch, buf_r[i + _AHEAD])
                if m > 64:
                    _prefetch_row(sketch[:, 64:], buf_r[i + _AHEAD])
            r = buf_r[i]
            s = np.int32(0)  # exact: |s| < 2**24 (_lsh_search._SK_L1)
            for d in range(m):
                s += np.int32(sketch[r, d]) * wq[j, d]
            buf_k[i] = (np.int64(s) << 32) | (0xFFFFFFFF - np.int64(buf_c[i]))
        kth = np.partition(buf_k[:n2], n2 - depth)[n2 - depth]
        o = 0
        for i in range(n2):
            if buf_k[i] >= kth:
                out[j, o] = buf_r[i]
                o += 1

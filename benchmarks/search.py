"""Search benchmark: LSH against exact search, faiss (HNSW; binary codes) and Annoy, over several
vector distributions, with the neighbour statistics of real descriptors beside the generated ones.

    .venv/bin/python benchmarks/search.py                    # 100k x 4096 and 1M x 512, all sets
    .venv/bin/python benchmarks/search.py --quick            # 20k x 512 smoke run
    .venv/bin/python benchmarks/search.py --sizes 100000x4096 --dists broad,fitted

Distributions (benchmarks/synthetic.py): `current` (the old 20k-sub-cluster generator),
`broad` (300 broad overlapping clusters, latent rank 64, noise comparable to the spread, shared
offset), `rank16` / `rank256` (the same at latent rank 16 / 256), `offset-weak` /
`offset-strong`, `heavy-tail` (2,000 clusters with lognormal sizes, rank 128, strong offset),
`fitted` (fitted to real descriptors; see below).

Real descriptors: fused EfficientNet-Lite0 (ImageNet weights) descriptors of the photos in
../shared/data/oxford-flowers17-12class, computed here when that folder and the Lite0 backbone
are available and cached to --real-cache, else read from --real-cache. Their statistics (mean
cosine, relative contrast at the 10th neighbour, local intrinsic dimension by the MLE on 20
neighbours) are printed next to every generator's at the same size and dimension.

Per distribution and size, one data set is generated and shared by every index. Columns:
recall@10 over all held-out queries against exact search; median / p95 wall ms per single
query and the median thread CPU ms (read that one when other jobs share the cores); batch ms
per query through `query_batch`; build seconds; index RAM bytes per vector, measured with
tracemalloc while loading the saved index (memory-mapped vectors excluded); speed-up = the
exact float32 numpy scan's median / this median (cpu spd: the same with thread CPU time,
the figure to read on a loaded machine; the exact scan's BLAS helper thread is not counted,
so it errs low). Anchors are swept over their search knob and reported at the cheapest
setting (by thread CPU time) whose recall reaches LSH's measured recall, and again at the
fixed --anchor-recall (0.95), the same bar for every index and distribution:

* faiss HNSW-Flat at M = 16, 32, 48 (--hnsw-m), efConstruction 200 (--hnsw-efc), efSearch
  16-1024: the graph's RAM (B/vec) apart from the float32 vectors it holds (+f32 B);
* faiss IVF-Flat, nlist ~ 4 sqrt(n) (4,096 at 1M), nprobe 1-512;
* faiss IVF-PQ (dim/16 bytes) + float32 refine on the same coarse lists, nprobe x k_factor;
* faiss IndexLSH (256-bit binary codes, a flat Hamming scan) + float32 refine, k_factor;
* Annoy (skipped above --annoy-max-n rows: at 1M x 512 it was slower than the exact scan).

faiss builds use every core; its queries run on one OpenMP thread, like LSH's. `touched/q`
is the vectors one query touches: exact float distances for HNSW / IVF (faiss's counters),
PQ codes for IVF-PQ, and for LSH its distinct bucket candidates > the rows of the exact
re-rank. The run ends with the worst case over distributions per size: LSH's speed-up at
its recall (flagged below 0.95), the fastest anchor at >= 0.95 and the fastest within 300 B
per vector (float vectors not counted), LSH / best HNSW, and each set's neighbour
statistics at the run size and at the real descriptors' size. --json-out appends results to
a file; --summary FILES prints that table for separate runs (one distribution per run).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import (  # noqa: E402
    BroadClusters,
    FittedFeatures,
    SyntheticFeatures,
    neighbour_stats,
)

from imgfinder.core.index import AnnoyIndex, LSHIndex  # noqa: E402

log = logging.getLogger("bench.search")
K = 10
REAL_DIR = Path(
    os.environ.get("IMGFINDER_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-flowers17-12class"
)
REAL_CACHE = "/tmp/imgfinder-real/lite0_flowers_fused.npy"

BROAD = "broad clusters (300, latent rank 64, noise ~ spread"
DISTS = {
    "current": (
        "old generator: 20k tight sub-clusters, rank 32",
        lambda d, s: SyntheticFeatures(d, seed=s),
    ),
    "broad": (f"{BROAD}, offset 0.6)", lambda d, s: BroadClusters(d, seed=s)),
    "rank16": ("broad clusters at latent rank 16", lambda d, s: BroadClusters(d, seed=s, rank=16)),
    "rank256": (
        "broad clusters at latent rank 256",
        lambda d, s: BroadClusters(d, seed=s, rank=256),
    ),
    "offset-weak": (
        "broad clusters, weak offset 0.15",
        lambda d, s: BroadClusters(d, seed=s, offset=0.15),
    ),
    "offset-strong": (
        "broad clusters, strong offset 2.0",
        lambda d, s: BroadClusters(d, seed=s, offset=2.0),
    ),
    "heavy-tail": (
        "2,000 clusters, lognormal sizes (sigma 1.5), rank 128, offset 1.5",
        lambda d, s: BroadClusters(
            d, seed=s, rank=128, n_clusters=2000, size_sigma=1.5, offset=1.5, noise=0.6
        ),
    ),
}


class Projected:
    """A generator's rows mapped to another dimension by a fixed random orthonormal map
    (an isometry when growing the dimension; a Johnson-Lindenstrauss projection when
    shrinking it), then L2-normalised. Used to run the fitted generator at every size."""

    def __init__(self, model, dim: int, seed: int = 0):
        self.model, self.dim = model, dim
        src = model.dim
        g = np.random.default_rng(seed + 99).standard_normal((max(src, dim), min(src, dim)))
        q, _ = np.linalg.qr(g)  # orthonormal columns
        self._map = (q if src >= dim else q.T).astype(np.float32)  # (src, dim)

    def sample(self, n: int, seed: int, chunk: int = 8192) -> np.ndarray:
        out = np.empty((n, self.dim), np.float16)
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            x = self.model.sample(m, seed + lo).astype(np.float32) @ self._map
            out[lo : lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


# ---- real descriptors ---------------------------------------------------------------------
def real_descriptors(args) -> tuple[np.ndarray | None, str]:
    """(rows, where they came from) or (None, why not). Computed from the photos when they
    and the Lite0 backbone are here (and checked against --real-cache when that exists),
    else read from --real-cache."""
    cache = Path(args.real_cache)
    data = Path(args.real_dir)
    cached = np.load(cache).astype(np.float32) if cache.is_file() else None
    if data.is_dir() and not args.real_from_cache:
        got, why = _compute_real(data)
        if got is not None:
            if args.save_real:
                tmp = Path(args.save_real + ".tmp.npy")
                np.save(tmp, got)
                os.replace(tmp, args.save_real)
            if cached is not None and cached.shape == got.shape:
                why += f"; max |difference| to {cache}: {np.abs(cached - got).max():.2e}"
            return got, why
        log.warning("real descriptors not computed: %s", why)
    if cached is not None:
        return cached, f"cached file {cache} ({len(cached)} x {cached.shape[1]})"
    return None, f"no photos at {data} with the Lite0 backbone, and no cache at {cache}"


def _compute_real(data: Path) -> tuple[np.ndarray | None, str]:
    try:
        import torch

        from imgfinder.core.extract import Extractor, ModelConfig

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        cfg = ModelConfig(backbone="efficientnet-lite0", device="cpu")  # type: ignore[call-arg]
        ex = Extractor(cfg, allow_download=False)
    except Exception as exc:  # noqa: BLE001 - report why and fall back to the cache
        return None, f"EfficientNet-Lite0 backbone unavailable ({type(exc).__name__}: {exc})"
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        return None, f"no photos under {data}"
    t0 = time.perf_counter()
    out = []
    for lo in range(0, len(files), 32):
        out.append(ex.embed_arrays([ex.load_array(str(f)) for f in files[lo : lo + 32]]))
    x = np.concatenate(out).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, (
        f"{len(files)} photos of {data.name}, model {ex.model_id} (ImageNet weights), "
        f"computed in {time.perf_counter() - t0:.0f} s"
    )


def print_stats_table(real: np.ndarray | None, real_why: str, dists: dict, args) -> dict:
    """Neighbour statistics of real descriptors and of every generator at the same size."""
    if real is not None:
        n, dim = real.shape
        print(f"\nreal descriptors: {real_why}")
    else:
        n, dim = 3465, 4096
        print(f"\nreal descriptors unavailable ({real_why}); generators at {n} x {dim} only")
    print(f"neighbour statistics at {n} x {dim} (rows as queries, themselves excluded):")
    head = f"{'vectors':<16}{'mean cos':>10}{'RC@10':>8}{'LID(20)':>9}  description"
    print(head + "\n" + "-" * len(head))
    rows = []
    if real is not None:
        rows.append(("real", neighbour_stats(real, seed=args.seed), "fused Lite0 descriptors"))
    for name, (desc, make) in dists.items():
        x = make(dim, args.seed).sample(n, args.seed + 1)
        rows.append((name, neighbour_stats(x, seed=args.seed), desc))
    for name, st, desc in rows:
        print(f"{name:<16}{st['mean_cos']:10.3f}{st['rc10']:8.3f}{st['lid20']:9.1f}  {desc}")
    sys.stdout.flush()
    return {"size": f"{n:,} x {dim}", **{name: st for name, st, _ in rows}}


# ---- measurement helpers ------------------------------------------------------------------
def unit32(x: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(x.shape, np.float32)
    for lo in range(0, len(x), chunk):
        b = x[lo : lo + chunk].astype(np.float32)
        out[lo : lo + chunk] = b / np.linalg.norm(b, axis=1, keepdims=True)
    return out


def exact_truth(x32: np.ndarray, q: np.ndarray, chunk: int = 32768):
    """Exact 10-NN of every query (batched float32 GEMM) plus the same neighbour statistics
    as `neighbour_stats`, here for held-out queries against the full set."""
    nq = len(q)
    best_s = np.full((nq, 20), -np.inf, np.float32)
    best_i = np.zeros((nq, 20), np.int64)
    cos_sum = np.zeros(nq)
    dist_sum = np.zeros(nq)
    for lo in range(0, len(x32), chunk):
        s = q @ x32[lo : lo + chunk].T
        cos_sum += s.sum(axis=1)
        dist_sum += np.sqrt(np.maximum(2 - 2 * s, 0)).sum(axis=1)
        part = np.argpartition(-s, 19, axis=1)[:, :20]
        cs = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        ci = np.concatenate([best_i, part + lo], axis=1)
        order = np.argsort(-cs, axis=1)[:, :20]
        best_s, best_i = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
    d = np.sqrt(np.maximum(2 - 2 * best_s.astype(np.float64), 1e-12))
    lid = -1.0 / np.mean(np.log(d[:, :-1] / d[:, -1:]), axis=1)
    stats = {
        "mean_cos": float(np.mean(cos_sum / len(x32))),
        "rc10": float(np.mean(dist_sum / len(x32) / d[:, 9])),
        "lid20": float(np.mean(lid)),
    }
    return best_i[:, :K], stats


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(g, t)) / K for g, t in zip(got, truth, strict=True)]))


def time_queries(search, queries: np.ndarray):
    """search(q) -> ids; returns (ids (Q, K), wall ms, thread-CPU ms)."""
    out = np.full((len(queries), K), -1, np.int64)
    wall, cpu = [], []
    search(queries[0])
    for j, q in enumerate(queries):
        c0, t0 = time.thread_time(), time.perf_counter()
        ids = search(q)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        out[j, : len(ids)] = ids[:K]
    return out, np.array(wall) * 1e3, np.array(cpu) * 1e3


def loaded_ram_bytes(idx, path: Path):
    idx.save(path)
    gc.collect()
    tracemalloc.start()
    loaded = type(idx).load(path, verify_vectors=False)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return loaded, current


class Row:
    """One index at one setting. bpv: index RAM per vector without float vectors; vec_bpv:
    float vectors the index itself holds in RAM (faiss HNSW / IVF-Flat / refine: float32),
    0 for indexes that read the memory-mapped float16 store; ndis: vectors touched per
    query (exact float distances for HNSW and IVF; LSH: candidates / exact re-rank rows)."""

    def __init__(self, name, rec, wall, cpu, batch_ms, build_s, bpv, note="", vec_bpv=0, ndis=""):
        self.name, self.rec, self.note = name, rec, note
        self.med, self.p95 = float(np.median(wall)), float(np.percentile(wall, 95))
        self.cpu = float(np.median(cpu))
        self.batch_ms, self.build_s, self.bpv = batch_ms, build_s, bpv
        self.vec_bpv, self.ndis = vec_bpv, ndis


def print_rows(title: str, rows: list[Row], exact_ms: float, exact_cpu: float) -> None:
    print(f"\n{title}")
    head = (
        f"{'index':<30}{'recall@10':>10}{'med ms':>9}{'p95 ms':>9}{'cpu ms':>9}{'batch ms':>9}"
        f"{'build s':>9}{'B/vec':>7}{'+f32 B':>7}{'speedup':>9}{'cpu spd':>9}"
        f"{'touched/q':>14}  note"
    )
    print(head + "\n" + "-" * len(head))
    for r in rows:
        f = lambda v, w, p: f"{v:{w}.{p}f}" if v is not None else " " * w  # noqa: E731
        print(
            f"{r.name:<30}{r.rec:10.4f}{r.med:9.3f}{r.p95:9.3f}{r.cpu:9.3f}{f(r.batch_ms, 9, 3)}"
            f"{f(r.build_s, 9, 1)}{f(r.bpv, 7, 0)}{f(r.vec_bpv, 7, 0)}{exact_ms / r.med:9.1f}"
            f"{exact_cpu / max(r.cpu, 1e-6):9.1f}{r.ndis:>14}  {r.note}"
        )
    sys.stdout.flush()


# ---- one distribution at one size ---------------------------------------------------------
def run_one(name, make, n, dim, args, workdir: Path, anchors: bool) -> dict:
    t0 = time.perf_counter()
    model = make(dim, args.seed)
    base = model.sample(n, args.seed + 1)
    queries = unit32(model.sample(args.queries, args.seed + 2))
    x32 = unit32(base)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    truth, st = exact_truth(x32, queries)
    print(
        f"\n--- {name} at {n:,} x {dim}: generated in {gen_s:.0f} s, exact truth for "
        f"{len(queries)} held-out queries in {time.perf_counter() - t0:.0f} s; held-out "
        f"queries vs all rows: mean cos {st['mean_cos']:.3f}, RC@10 {st['rc10']:.3f}, "
        f"LID(20) {st['lid20']:.1f}",
        flush=True,
    )

    def exact_search(q):
        s = x32 @ q
        top = np.argpartition(-s, K - 1)[:K]
        return top[np.argsort(-s[top])]

    sub = queries[: args.exact_queries]
    got, wall, cpu = time_queries(exact_search, sub)
    exact_ms, exact_cpu = float(np.median(wall)), float(np.median(cpu))
    print(f"  exact scan: {exact_cpu:.2f} ms CPU, {exact_ms:.2f} ms wall per query", flush=True)
    rows = [
        Row(
            "exact (numpy f32 scan)",
            recall(got, truth[: len(sub)]),
            wall,
            cpu,
            None,
            None,
            None,
            f"{len(sub)} queries timed",
        )
    ]

    t0 = time.perf_counter()
    lsh = LSHIndex(dim, seed=args.seed)
    for lo in range(0, n, 50_000):
        lsh.add(np.arange(lo, min(n, lo + 50_000)), base[lo : lo + 50_000])
    lsh.build()
    build_s = time.perf_counter() - t0
    lsh, ram = loaded_ram_bytes(lsh, workdir / "lsh.idx")
    stored = lsh.measured_recall or {}
    got, wall, cpu = time_queries(lambda q: lsh.query(q, K)[0], queries)
    t0 = time.perf_counter()
    bi, _ = lsh.query_batch(queries, K)
    batch_ms = (time.perf_counter() - t0) / len(queries) * 1e3
    same = bool(np.array_equal(bi, got))
    lsh_rec = recall(got, truth)
    # vectors touched per query: distinct bucket candidates (Hamming-ranked over packed codes)
    # and the rows that reach the exact float16 re-rank after the sketch and refine stages
    cands = float(np.mean([len(lsh.candidates(q)) for q in queries[:50]]))
    depths = (lsh._pre_depth(K), lsh._depth(K), lsh._refine_depth(K))
    lsh_row = Row(
        "lsh (default)",
        lsh_rec,
        wall,
        cpu,
        batch_ms,
        build_s,
        ram / n,
        f"b={lsh._b} L={lsh._L} probes={lsh._probes} pre/10={lsh._prefilter} "
        f"rerank/10={lsh._rerank} refine/10={lsh._refine}; stored recall {stored.get('recall_at_10', float('nan')):.3f}; "
        f"batch==single {same}; candidates {cands:,.0f} -> prefilter {depths[0]} -> sketch "
        f"top {depths[1]} -> refine top {depths[2]} exact",
        ndis=f"{cands / 1e3:.1f}k>{depths[2] or depths[1]}",
    )
    rows.append(lsh_row)
    print(
        f"  lsh: recall {lsh_rec:.4f}, {lsh_row.cpu:.3f} ms CPU ({lsh_row.med:.3f} wall), "
        f"{exact_cpu / max(lsh_row.cpu, 1e-6):.1f}x the exact scan's CPU; {lsh_row.note}",
        flush=True,
    )
    lsh = None
    gc.collect()

    if anchors:
        rows += run_anchors(x32, base, queries, truth, lsh_rec, dim, args, workdir)
    x32 = base = None
    gc.collect()
    print_rows(f"{name} at {n:,} x {dim} (k=10; single-query times)", rows, exact_ms, exact_cpu)
    return {
        "dist": name,
        "recall": lsh_rec,
        "ms": lsh_row.med,
        "cpu_ms": lsh_row.cpu,
        "speedup": exact_ms / lsh_row.med,
        "cpu_speedup": exact_cpu / max(lsh_row.cpu, 1e-6),
        "bpv": ram / n,
        "exact_ms": exact_ms,
        "exact_cpu": exact_cpu,
        "stats": st,
        "load": os.getloadavg()[0],
        "rows": [
            {
                "name": r.name,
                "recall": r.rec,
                "ms": r.med,
                "cpu_ms": r.cpu,
                "build_s": r.build_s,
                "bpv": r.bpv,
                "vec_bpv": r.vec_bpv,
                "ndis": r.ndis,
                "note": r.note,
            }
            for r in rows[1:]
        ],
    }


def _at_equal_recall(name, settings, target, whose="lsh's"):
    """settings: [(label, recall, wall, cpu, build_s, bpv, vec_bpv, ndis)] -> the cheapest
    reaching target."""
    ok = [s for s in settings if s[1] >= target]
    if ok:
        pick = min(ok, key=lambda s: np.median(s[3]))  # thread CPU: the loaded-machine figure
        note = f"{pick[0]} (cheapest with recall >= {whose} {target:.3f})"
    else:
        pick = max(settings, key=lambda s: s[1])
        note = f"{pick[0]} (best swept; none reached {whose} {target:.3f})"
    return Row(name, *pick[1:4], None, *pick[4:6], note, *pick[6:8])


def _picks(name, settings, target, fixed, extra="") -> list[Row]:
    """The anchor at LSH's measured recall, and (when it differs) at the fixed recall
    `fixed` (--anchor-recall), the same for every index and distribution."""
    rows = [_at_equal_recall(name, settings, target)]
    if fixed and abs(fixed - target) > 5e-4:
        rows.append(_at_equal_recall(f"{name} @{fixed:.2f}", settings, fixed, "fixed"))
    for r in rows:
        r.note += extra
        # printed at once too: a long run stopped part-way keeps what it measured
        print(
            f"  {r.name}: recall {r.rec:.4f}, {r.cpu:.3f} ms CPU ({r.med:.3f} wall), build "
            f"{r.build_s or 0:.0f} s, {r.bpv or 0:.0f} + {r.vec_bpv or 0:.0f} B/vec, touched "
            f"{r.ndis or '-'}; {r.note}",
            flush=True,
        )
    return rows


def _sweep(knobs, queries, truth, stop, build_s, bpv, vec_bpv=0, ndis=None):
    """Time each (label, search) of `knobs` in order until recall reaches `stop`. ndis: a
    (reset, read) pair of faiss counters giving vectors touched per query."""
    settings = []
    for label, fn in knobs:
        if ndis:
            ndis[0]()
        got, wall, cpu = time_queries(fn, queries)
        nd = f"{ndis[1]() / (len(queries) + 1) / 1e3:.1f}k" if ndis else ""
        settings.append((label, recall(got, truth), wall, cpu, build_s, bpv, vec_bpv, nd))
        if settings[-1][1] >= stop:
            break
    return settings


def _threads(faiss, build: bool) -> None:
    """faiss builds may use every core; queries run on one thread, like LSH's."""
    faiss.omp_set_num_threads((os.cpu_count() or 1) if build else 1)


def run_anchors(x32, base, queries, truth, target, dim, args, workdir) -> list[Row]:
    out = []
    fixed = args.anchor_recall
    stop = max(target, fixed or 0, 0.99)
    n = len(x32)
    try:
        import faiss
    except ImportError:
        print("faiss-cpu not installed (pip install -e '.[bench]'): faiss anchors skipped")
        faiss = None
    if faiss is not None:
        _threads(faiss, True)
        t0 = time.perf_counter()
        codes = faiss.IndexLSH(dim, 256, True, True)  # rotation + trained thresholds
        ref = faiss.IndexRefineFlat(codes)
        ref.train(x32[: min(len(x32), 50_000)])
        ref.add(x32)
        rb = time.perf_counter() - t0
        _threads(faiss, False)
        knobs = [
            (
                f"k_factor={kf}",
                lambda q, p=faiss.IndexRefineSearchParameters(k_factor=kf): ref.search(
                    q[None, :], K, params=p
                )[1][0],
            )
            for kf in (4, 8, 16, 32, 64, 128, 256)
        ]
        settings = _sweep(knobs, queries, truth, stop, rb, 32.0, 4 * dim)
        extra = "; a flat Hamming scan of every code, then an exact re-rank of k_factor * 10"
        out += _picks("faiss IndexLSH 256b + refine", settings, target, fixed, extra)
        del ref, codes
        gc.collect()
        if not (args.skip_ivfflat and args.skip_ivfpq):
            out += _ivf_anchors(faiss, x32, queries, truth, target, fixed, stop, dim, args)
        # the HNSW builds are the long part (minutes at 1M): last, so a run stopped part-way
        # has the cheaper anchors already printed
        for m in (int(v) for v in args.hnsw_m.split(",") if v):
            out += _hnsw_anchor(faiss, x32, queries, truth, target, fixed, stop, m, args)
    if args.skip_annoy or n > args.annoy_max_n:
        why = "--skip-annoy" if args.skip_annoy else f"n > --annoy-max-n {args.annoy_max_n:,}"
        print(f"Annoy skipped ({why}; at 1M x 512 it was slower than the exact scan)")
        return out
    t0 = time.perf_counter()
    ann = AnnoyIndex(dim, seed=args.seed)
    for lo in range(0, len(base), 50_000):
        ann.add(np.arange(lo, min(len(base), lo + 50_000)), base[lo : lo + 50_000])
    ann.build()
    ab = time.perf_counter() - t0
    ann, ram = loaded_ram_bytes(ann, workdir / "annoy.idx")
    auto = ann._search_k

    def search_k(sk):
        def fn(q):
            ann._search_k = sk
            return ann.query(q, K)[0]

        return fn

    knobs = [
        (f"search_k={max(1, int(auto * m))}", search_k(max(1, int(auto * m))))
        for m in (1, 2, 4, 8, 16)
    ]
    settings = _sweep(knobs, queries, truth, stop, ab, ram / len(base))
    out += _picks(f"annoy ({ann._n_trees} trees)", settings, target, fixed)
    ann = None
    gc.collect()
    return out


def _hnsw_anchor(faiss, x32, queries, truth, target, fixed, stop, m, args) -> list[Row]:
    """faiss HNSW-Flat with M links per node (2M on the base layer) and efConstruction
    --hnsw-efc, swept over efSearch. RAM: the graph (neighbour lists, levels, offsets) is
    counted in B/vec; the float32 vectors it walks over (held in RAM by faiss) separately."""
    n, dim = x32.shape
    _threads(faiss, True)
    t0 = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = args.hnsw_efc
    hnsw.add(x32)
    hb = time.perf_counter() - t0
    _threads(faiss, False)
    g = hnsw.hnsw
    bpv = (g.neighbors.size() * 4 + g.levels.size() * 4 + g.offsets.size() * 8) / n
    print(f"  HNSW{m} efConstruction {args.hnsw_efc}: built in {hb:.0f} s", flush=True)

    def ef_search(ef):
        def fn(q):
            hnsw.hnsw.efSearch = ef
            return hnsw.search(q[None, :], K)[1][0]

        return fn

    efs = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
    knobs = [(f"efSearch={ef}", ef_search(ef)) for ef in efs]
    st = faiss.cvar.hnsw_stats
    settings = _sweep(knobs, queries, truth, stop, hb, bpv, 4 * dim, (st.reset, lambda: st.ndis))
    extra = f"; efConstruction {args.hnsw_efc}"
    rows = _picks(f"faiss HNSW{m} (float32)", settings, target, fixed, extra)
    hnsw = None
    gc.collect()
    return rows


def _ivf_anchors(faiss, x32, queries, truth, target, fixed, stop, dim, args) -> list[Row]:
    """faiss IVF-Flat (nlist ~ 4 sqrt(n), a power of two; k-means of 10 iterations on 40
    points per list) swept over nprobe, and IVF-PQ (dim/16 sub-quantisers of 8 bits) on the
    same coarse quantizer with an exact float32 re-rank of its top k_factor * 10
    (IndexRefineFlat), swept over nprobe at k_factor 16 and 64. Both are added with the one
    coarse assignment of every row. A 300 B/vector budget holds IVF-Flat's ids (8 B) and
    IVF-PQ's codes and ids, not the float32 rows both read."""
    from faiss.contrib.ivf_tools import add_preassigned

    n = len(x32)
    nlist = args.ivf_nlist or int(min(65536, max(16, 2 ** round(math.log2(4 * math.sqrt(n))))))
    rng = np.random.default_rng(0)
    train = x32[np.sort(rng.choice(n, min(n, 40 * nlist), replace=False))]
    _threads(faiss, True)
    t0 = time.perf_counter()
    quant = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quant, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = 10
    ivf.train(train)
    train_s = time.perf_counter() - t0
    assign = np.empty(n, np.int64)
    for lo in range(0, n, 65536):
        assign[lo : lo + 65536] = quant.search(x32[lo : lo + 65536], 1)[1][:, 0]
    assign_s = time.perf_counter() - t0 - train_s
    out = []
    ivf_stats = faiss.cvar.indexIVF_stats
    counter = (ivf_stats.reset, lambda: ivf_stats.ndis)
    grid = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
    probes = [p for p in grid if p <= nlist]  # steps of about sqrt(2)
    if not args.skip_ivfflat:
        t1 = time.perf_counter()
        add_preassigned(ivf, x32, assign)
        build_s = time.perf_counter() - t1 + train_s + assign_s
        _threads(faiss, False)
        sizes = np.bincount(assign, minlength=nlist)

        def nprobe_flat(p):
            params = faiss.SearchParametersIVF(nprobe=p)
            return lambda q: ivf.search(q[None, :], K, params=params)[1][0]

        knobs = [(f"nprobe={p}", nprobe_flat(p)) for p in probes]
        settings = _sweep(knobs, queries, truth, stop, build_s, 8.0, 4 * dim, counter)
        extra = (
            f"; nlist={nlist} (list sizes median {int(np.median(sizes))}, max {sizes.max()}); "
            f"train {train_s:.0f} s on {len(train):,} rows, assign {assign_s:.0f} s"
        )
        out += _picks(f"faiss IVF{nlist}-Flat", settings, target, fixed, extra)
        ivf.reset()
    ivf = None
    gc.collect()
    if not args.skip_ivfpq:
        m = max(1, dim // 16)
        _threads(faiss, True)
        t1 = time.perf_counter()
        pq = faiss.IndexIVFPQ(quant, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        pq.train(train)  # the quantizer is trained: only the PQ codebooks are fitted
        ref = faiss.IndexRefineFlat(pq)  # made while both are empty, then filled alike
        add_preassigned(pq, x32, assign)
        ref.refine_index.add(x32)
        ref.ntotal = pq.ntotal
        build_s = time.perf_counter() - t1 + train_s + assign_s
        _threads(faiss, False)

        def nprobe_pq(p, kf):
            params = faiss.IndexRefineSearchParameters(
                k_factor=kf, base_index_params=faiss.SearchParametersIVF(nprobe=p)
            )
            return lambda q: ref.search(q[None, :], K, params=params)[1][0]

        settings = []
        for kf in (16, 64):
            knobs = [(f"nprobe={p} k_factor={kf}", nprobe_pq(p, kf)) for p in probes[3:]]
            settings += _sweep(knobs, queries, truth, stop, build_s, m + 8.0, 4 * dim, counter)
        extra = f"; nlist={nlist} PQ{m}x8; touched = PQ codes scanned"
        out += _picks(f"faiss IVF{nlist}-PQ{m} + refine", settings, target, fixed, extra)
        del ref, pq
        gc.collect()
    return out


def save_results(path: Path, res: dict, stats: dict) -> None:
    """Append one distribution's result (and the statistics table) to a JSON file, crash-safe
    (temp + os.replace), so separate runs can be summarised together with --summary."""
    got = json.loads(path.read_text()) if path.is_file() else {"results": [], "stats": {}}
    got["results"] = [
        r for r in got["results"] if (r["size"], r["dist"]) != (res["size"], res["dist"])
    ] + [res]
    got["stats"].update(stats)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(got, indent=1))
    os.replace(tmp, path)


def print_worst(results: list[dict], stats: dict, bar: float) -> None:
    """Per size: every distribution's LSH figure, the fastest anchor reaching `bar`, the
    fastest of those within 300 B/vector (float vectors not counted), and the worst case;
    beside them the neighbour statistics at the run size (held-out queries against all rows)
    and at the real descriptors' size (rows as queries), with the real descriptors' own."""
    bar = bar or 0.95
    print(
        f"\nWorst case over distributions (speed-ups by thread CPU time against the same run's"
        f" exact float32 scan; anchors at the cheapest setting with recall >= {bar:.2f}; "
        f"'<=300B': index RAM without float vectors <= 300 B/vector; stats: RC@10 / LID(20)"
        f" / mean cos at the run size, then at {stats.get('size', 'the real size')})"
    )
    head = (
        f"{'size':<16}{'dist':<14}{'LSH rec':>8}{'cpu ms':>8}{'spd':>7}  {'best anchor':<28}"
        f"{'rec':>6}{'cpu ms':>8}{'spd':>7}  {'best <=300B':<28}{'spd':>7}{'LSH/HNSW':>9}"
        f"  {'RC  LID  cos (run)':<20}{'RC  LID  cos (real n)':<22}"
    )
    print(head + "\n" + "-" * len(head))

    def stat(st):
        return f"{st['rc10']:.3f} {st['lid20']:4.1f} {st['mean_cos']:.2f}" if st else ""

    for size in dict.fromkeys(r["size"] for r in results):
        rs = sorted((r for r in results if r["size"] == size), key=lambda r: r["cpu_speedup"])
        worst = {"lsh": None, "best": None, "small": None}
        for r in rs:
            ex = r["exact_cpu"]
            anchors = [
                a
                for a in r["rows"]
                if not a["name"].startswith("lsh") and a["recall"] >= bar and a["cpu_ms"] > 0
            ]
            best = min(anchors, key=lambda a: a["cpu_ms"], default=None)
            small = min(
                (a for a in anchors if a["bpv"] is not None and a["bpv"] <= 300),
                key=lambda a: a["cpu_ms"],
                default=None,
            )
            hnsw = min(
                (a for a in anchors if "HNSW" in a["name"]), key=lambda a: a["cpu_ms"], default=None
            )
            ok = "" if r["recall"] >= bar else "!"
            line = f"{size:<16}{r['dist']:<14}{r['recall']:8.3f}{r['cpu_ms']:8.2f}"
            line += f"{r['cpu_speedup']:6.1f}{ok or 'x'}  "
            for a, full in ((best, True), (small, False)):
                name = "-" if a is None else a["name"].replace(f" @{bar:.2f}", "")
                line += f"{name.replace(' (float32)', ''):<28}"
                if full:
                    line += f"{a['recall']:6.3f}{a['cpu_ms']:8.2f}" if a else " " * 14
                line += f"{ex / a['cpu_ms']:6.1f}x  " if a else " " * 9
            ratio = f"{r['cpu_ms'] / hnsw['cpu_ms']:8.1f}x" if hnsw else f"{'-':>9}"
            line += ratio
            line += f"  {stat(r.get('stats')):<20}{stat(stats.get(r['dist'])):<22}"
            print(line)
            for key, val in (
                ("lsh", r["cpu_speedup"] if not ok else 0.0),
                ("best", ex / best["cpu_ms"] if best else None),
                ("small", ex / small["cpu_ms"] if small else None),
            ):
                if val is not None and (worst[key] is None or val < worst[key][0]):
                    worst[key] = (val, r["dist"])
        w = {k: f"{v[0]:.1f}x ({v[1]})" if v else "-" for k, v in worst.items()}
        print(
            f"{size:<16}{'WORST':<14}  LSH {w['lsh']} (0x: recall below {bar:.2f}); best anchor "
            f"{w['best']}, within 300 B {w['small']} (over the distributions run with anchors)"
        )
    if stats.get("real"):
        print(f"{'real descriptors':<{len(head) - 42}}{'':<20}{stat(stats['real']):<22}")
    sys.stdout.flush()


def _faiss_version() -> str:
    try:
        import faiss

        return f"faiss {faiss.__version__} ({faiss.SIMDConfig.get_level_name()})"
    except (ImportError, AttributeError):
        return "no faiss"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k x 512 smoke run")
    ap.add_argument("--sizes", default="100000x4096,1000000x512", help="comma list of NxD")
    ap.add_argument("--dists", default=",".join([*DISTS, "fitted"]), help="distributions to run")
    ap.add_argument(
        "--anchors", default="broad,fitted", help="distributions also run with faiss and Annoy"
    )
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--exact-queries", type=int, default=20, help="single exact queries timed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-annoy", action="store_true")
    ap.add_argument("--skip-ivfpq", action="store_true", help="no faiss IVF-PQ anchor")
    ap.add_argument("--skip-ivfflat", action="store_true", help="no faiss IVF-Flat anchor")
    ap.add_argument("--ivf-nlist", type=int, default=0, help="IVF lists (0: ~4 sqrt(n))")
    ap.add_argument("--hnsw-m", default="16,32,48", help="faiss HNSW M values ('' for none)")
    ap.add_argument("--hnsw-efc", type=int, default=200, help="faiss HNSW efConstruction")
    ap.add_argument(
        "--annoy-max-n", type=int, default=200_000, help="Annoy is skipped above this many rows"
    )
    ap.add_argument("--json-out", default=None, help="append each result to this JSON file")
    ap.add_argument(
        "--summary",
        default=None,
        help="only print the worst-case table from these --json-out files (comma list)",
    )
    ap.add_argument(
        "--anchor-recall",
        type=float,
        default=0.95,
        help="anchors are also reported at this recall (0: only at LSH's)",
    )
    ap.add_argument("--real-dir", default=str(REAL_DIR), help="photos for real descriptors")
    ap.add_argument("--real-cache", default=REAL_CACHE, help="cached real descriptors (.npy)")
    ap.add_argument("--real-from-cache", action="store_true", help="do not compute them")
    ap.add_argument("--save-real", default=None, help="save computed descriptors here (.npy)")
    ap.add_argument("--no-stats", action="store_true", help="skip the statistics table")
    ap.add_argument("--stats-only", action="store_true", help="only the statistics table")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    if args.summary:
        results, stats = [], {}
        for f in args.summary.split(","):
            got = json.loads(Path(f).read_text())
            results += got["results"]
            stats.update(got["stats"])
        print_worst(results, stats, args.anchor_recall)
        return
    sizes = "20000x512" if args.quick else args.sizes
    if args.quick:
        args.queries = min(args.queries, 200)
    t_start = time.perf_counter()
    print(
        f"numpy {np.__version__}, {_faiss_version()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start (timings are from a shared machine)"
    )
    real, why = real_descriptors(args)
    dists = {k: v for k, v in DISTS.items() if k in args.dists.split(",")}
    if real is not None and "fitted" in args.dists.split(","):
        fitted, _, _ = FittedFeatures.fit(real, seed=args.seed)
        desc = f"fitted to the real descriptors (c={fitted.c:.2f}, rank {fitted.rank})"
        dists["fitted"] = (
            desc,
            lambda d, s, f=fitted: f if d == f.dim else Projected(f, d, s),
        )
    elif "fitted" in args.dists.split(","):
        print(f"fitted distribution skipped: {why}")
    order = ["broad", "fitted", *DISTS]  # anchors' sets first: their figures come early
    dists = {k: dists[k] for k in dict.fromkeys(order) if k in dists}
    stats = {}
    if not args.no_stats:
        stats = print_stats_table(real, why, dists, args)
    if args.stats_only:
        return
    results = []
    anchor_set = set(args.anchors.split(",")) if args.anchors else set()
    with tempfile.TemporaryDirectory(prefix="imgfinder-bench-") as tmp:
        for spec in sizes.split(","):
            n, dim = (int(x) for x in spec.lower().split("x"))
            for name, (_, make) in dists.items():
                res = run_one(name, make, n, dim, args, Path(tmp), name in anchor_set)
                results.append({"size": f"{n:,} x {dim}", **res})
                if args.json_out:
                    save_results(Path(args.json_out), res | {"size": f"{n:,} x {dim}"}, stats)
    print_worst(results, stats, args.anchor_recall)
    print(
        f"\ntotal {time.perf_counter() - t_start:.0f} s; load average "
        f"{os.getloadavg()[0]:.1f} at end"
    )


if __name__ == "__main__":
    main()

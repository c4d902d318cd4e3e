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
so it errs low). Anchors (faiss HNSW32, faiss IndexLSH + refine, faiss IVF-PQ + refine, Annoy)
are swept over their search knob and reported at the cheapest setting (by thread CPU time)
whose recall reaches LSH's measured recall, and again at the fixed --anchor-recall (0.95),
the same bar for every index and distribution.
"""

from __future__ import annotations

import argparse
import gc
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
REAL_DIR = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "oxford-flowers17-12class"
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


def print_stats_table(real: np.ndarray | None, real_why: str, dists: dict, args) -> None:
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
    def __init__(self, name, rec, wall, cpu, batch_ms, build_s, bpv, note=""):
        self.name, self.rec, self.note = name, rec, note
        self.med, self.p95 = float(np.median(wall)), float(np.percentile(wall, 95))
        self.cpu = float(np.median(cpu))
        self.batch_ms, self.build_s, self.bpv = batch_ms, build_s, bpv


def print_rows(title: str, rows: list[Row], exact_ms: float, exact_cpu: float) -> None:
    print(f"\n{title}")
    head = (
        f"{'index':<30}{'recall@10':>10}{'med ms':>9}{'p95 ms':>9}{'cpu ms':>9}{'batch ms':>9}"
        f"{'build s':>9}{'B/vec':>7}{'speedup':>9}{'cpu spd':>9}  note"
    )
    print(head + "\n" + "-" * len(head))
    for r in rows:
        f = lambda v, w, p: f"{v:{w}.{p}f}" if v is not None else " " * w  # noqa: E731
        print(
            f"{r.name:<30}{r.rec:10.4f}{r.med:9.3f}{r.p95:9.3f}{r.cpu:9.3f}{f(r.batch_ms, 9, 3)}"
            f"{f(r.build_s, 9, 1)}{f(r.bpv, 7, 0)}{exact_ms / r.med:9.1f}"
            f"{exact_cpu / max(r.cpu, 1e-6):9.1f}  {r.note}"
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
        f"batch==single {same}",
    )
    rows.append(lsh_row)
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
        "speedup": exact_ms / lsh_row.med,
        "cpu_speedup": exact_cpu / max(lsh_row.cpu, 1e-6),
        "bpv": ram / n,
        "anchors": {r.name: (r.rec, r.med) for r in rows[2:]},
    }


def _at_equal_recall(name, settings, target, whose="lsh's"):
    """settings: [(label, recall, wall, cpu, build_s, bpv)] -> the cheapest reaching target."""
    ok = [s for s in settings if s[1] >= target]
    if ok:
        pick = min(ok, key=lambda s: np.median(s[3]))  # thread CPU: the loaded-machine figure
        note = f"{pick[0]} (cheapest with recall >= {whose} {target:.3f})"
    else:
        pick = max(settings, key=lambda s: s[1])
        note = f"{pick[0]} (best swept; none reached {whose} {target:.3f})"
    return Row(name, pick[1], pick[2], pick[3], None, pick[4], pick[5], note)


def _picks(name, settings, target, fixed, extra="") -> list[Row]:
    """The anchor at LSH's measured recall, and (when it differs) at the fixed recall
    `fixed` (--anchor-recall), the same for every index and distribution."""
    rows = [_at_equal_recall(name, settings, target)]
    if fixed and abs(fixed - target) > 5e-4:
        rows.append(_at_equal_recall(f"{name} @{fixed:.2f}", settings, fixed, "fixed"))
    for r in rows:
        r.note += extra
    return rows


def _sweep(knobs, queries, truth, stop, build_s, bpv):
    """Time each (label, search) of `knobs` in order until recall reaches `stop`."""
    settings = []
    for label, fn in knobs:
        got, wall, cpu = time_queries(fn, queries)
        settings.append((label, recall(got, truth), wall, cpu, build_s, bpv))
        if settings[-1][1] >= stop:
            break
    return settings


def run_anchors(x32, base, queries, truth, target, dim, args, workdir) -> list[Row]:
    out = []
    fixed = args.anchor_recall
    stop = max(target, fixed or 0, 0.99)
    try:
        import faiss
    except ImportError:
        print("faiss-cpu not installed (pip install -e '.[bench]'): faiss anchors skipped")
        faiss = None
    if faiss is not None:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        t0 = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 40
        hnsw.add(x32)
        hb = time.perf_counter() - t0
        faiss.omp_set_num_threads(1)  # queries one at a time, single-threaded like LSH
        bpv = (hnsw.hnsw.neighbors.size() * 4 + hnsw.hnsw.levels.size() * 4) / len(x32)

        def ef_search(ef):
            def fn(q):
                hnsw.hnsw.efSearch = ef
                return hnsw.search(q[None, :], K)[1][0]

            return fn

        knobs = [(f"efSearch={ef}", ef_search(ef)) for ef in (16, 32, 64, 128, 256, 512, 1024)]
        settings = _sweep(knobs, queries, truth, stop, hb, bpv)
        # its graph walk reads the float32 vectors it holds in RAM (not memory-mapped)
        extra = f"; B/vec = graph only, + {4 * dim} B/vec of float32 vectors in RAM"
        out += _picks("faiss HNSW32 (float32)", settings, target, fixed, extra)
        del hnsw
        gc.collect()
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        t0 = time.perf_counter()
        codes = faiss.IndexLSH(dim, 256, True, True)  # rotation + trained thresholds
        ref = faiss.IndexRefineFlat(codes)
        ref.train(x32[: min(len(x32), 50_000)])
        ref.add(x32)
        rb = time.perf_counter() - t0
        faiss.omp_set_num_threads(1)
        knobs = [
            (
                f"k_factor={kf}",
                lambda q, p=faiss.IndexRefineSearchParameters(k_factor=kf): ref.search(
                    q[None, :], K, params=p
                )[1][0],
            )
            for kf in (4, 16, 64, 256)
        ]
        settings = _sweep(knobs, queries, truth, stop, rb, 32.0)
        out += _picks("faiss IndexLSH 256b + refine", settings, target, fixed)
        del ref, codes
        gc.collect()
        if not args.skip_ivfpq:
            out += _ivfpq_anchor(faiss, x32, queries, truth, target, fixed, stop, dim)
    if not args.skip_annoy:
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
        del ann
        gc.collect()
    return out


def _ivfpq_anchor(faiss, x32, queries, truth, target, fixed, stop, dim) -> list[Row]:
    """faiss IVF-PQ (sqrt(n)-ish lists, dim/16 sub-quantisers of 8 bits) with an exact float32
    re-rank of the PQ top k_factor * 10 (IndexRefineFlat), swept over nprobe at k_factor 16:
    a data point for what an inverted-file index reaches in the same run (a 300 B/vector
    budget holds its PQ codes and list ids, not the float32 rows its refine reads)."""
    n = len(x32)
    nlist = int(min(4096, max(64, 2 ** round(math.log2(math.sqrt(n))))))
    m = max(1, dim // 16)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    quant = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFPQ(quant, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    ref = faiss.IndexRefineFlat(ivf)
    rng = np.random.default_rng(0)
    ref.train(x32[np.sort(rng.choice(n, min(n, 40 * nlist, 100_000), replace=False))])
    ref.add(x32)
    build_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    bpv = m + 8.0  # PQ code + list id per vector (float32 rows for the refine come on top)

    def nprobe(p):
        params = faiss.IndexRefineSearchParameters(
            k_factor=16, base_index_params=faiss.SearchParametersIVF(nprobe=p)
        )
        return lambda q: ref.search(q[None, :], K, params=params)[1][0]

    knobs = [(f"nprobe={p} k_factor=16", nprobe(p)) for p in (4, 8, 16, 32, 64, 128, 256)]
    settings = _sweep(knobs, queries, truth, stop, build_s, bpv)
    extra = f"; nlist={nlist} PQ{m}x8, + {4 * dim} B/vec of float32 rows for the refine"
    return _picks(f"faiss IVF{nlist}-PQ{m} + refine", settings, target, fixed, extra)


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
    sizes = "20000x512" if args.quick else args.sizes
    if args.quick:
        args.queries = min(args.queries, 200)
    t_start = time.perf_counter()
    print(
        f"numpy {np.__version__}, {os.cpu_count()} CPUs, load average "
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
    if not args.no_stats:
        print_stats_table(real, why, dists, args)
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
    print("\nLSH over all distributions (worst case first within each size):")
    head = (
        f"{'size':<16}{'distribution':<16}{'recall@10':>10}{'med ms':>9}{'speedup':>9}"
        f"{'cpu spd':>9}{'B/vec':>7}"
    )
    print(head + "\n" + "-" * len(head))
    for size in dict.fromkeys(r["size"] for r in results):
        rs = sorted((r for r in results if r["size"] == size), key=lambda r: r["recall"])
        for r in rs:
            print(
                f"{size:<16}{r['dist']:<16}{r['recall']:10.4f}{r['ms']:9.3f}"
                f"{r['speedup']:9.1f}{r['cpu_speedup']:9.1f}{r['bpv']:7.0f}"
            )
        print(
            f"{size:<16}{'WORST':<16}{min(r['recall'] for r in rs):10.4f}"
            f"{max(r['ms'] for r in rs):9.3f}{min(r['speedup'] for r in rs):9.1f}"
            f"{min(r['cpu_speedup'] for r in rs):9.1f}{max(r['bpv'] for r in rs):7.0f}"
        )
    print(
        f"\ntotal {time.perf_counter() - t_start:.0f} s; load average "
        f"{os.getloadavg()[0]:.1f} at end"
    )


if __name__ == "__main__":
    main()

"""Search benchmark: LSH vs Annoy vs exact on synthetic CNN-like vectors; prints a table.

    .venv/bin/python benchmarks/search.py                 # 100k x 4096 and 1M x 512
    .venv/bin/python benchmarks/search.py --quick         # 20k x 512 smoke run
    .venv/bin/python benchmarks/search.py --sizes 100000x4096 --queries 300

Columns: recall@10 against exact search over all queries; median and p95 wall-clock
milliseconds per single `query` call (plus the median thread CPU time, which is what to read
when other processes share the cores); build seconds (add + build, including calibration);
index RAM bytes per vector, measured with tracemalloc while loading the saved index, so
memory-mapped vectors are excluded (Annoy's own float32 forest is listed separately: it is
in RAM after build and memory-mapped after load); speed-up = exact median / median.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import SyntheticFeatures  # noqa: E402

from imgfinder.core.index import AnnoyIndex, ExactIndex, LSHIndex  # noqa: E402

log = logging.getLogger("bench.search")
K = 10


def timed_queries(idx, queries: np.ndarray, k: int = K):
    """Run single queries; returns (ids (Q,k), wall ms array, cpu ms array)."""
    out = np.full((len(queries), k), -1, dtype=np.int64)
    wall, cpu = [], []
    idx.query(queries[0], k)  # warm caches / lazily allocated scratch
    for j, q in enumerate(queries):
        c0, t0 = time.thread_time(), time.perf_counter()
        ids, _ = idx.query(q, k)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        out[j, : len(ids)] = ids
    return out, np.array(wall) * 1e3, np.array(cpu) * 1e3


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(g, t)) / K for g, t in zip(got, truth, strict=True)]))


def add_in_chunks(idx, base: np.ndarray, step: int = 50_000) -> None:
    for lo in range(0, len(base), step):
        idx.add(np.arange(lo, min(len(base), lo + step)), base[lo : lo + step])


def loaded_ram_bytes(idx, path: Path) -> tuple[object, int]:
    """Save, then load under tracemalloc: bytes the loaded index allocates (mapped data is
    not allocated, so vectors and Annoy's forest are excluded)."""
    idx.save(path)
    gc.collect()
    tracemalloc.start()
    loaded = type(idx).load(path, verify_vectors=False)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return loaded, current


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, name, rec, wall, cpu, build_s, bpv, exact_med, note=""):
        self.rows.append(
            (
                name,
                rec,
                np.median(wall),
                np.percentile(wall, 95),
                np.median(cpu),
                build_s,
                bpv,
                exact_med / np.median(wall),
                note,
            )
        )

    def print(self, title: str) -> None:
        print(f"\n{title}")
        head = (
            f"{'config':<34}{'recall@10':>10}{'med ms':>9}{'p95 ms':>9}{'cpu ms':>9}"
            f"{'build s':>9}{'B/vec':>8}{'speedup':>9}  note"
        )
        print(head)
        print("-" * len(head))
        for name, rec, med, p95, cpu, b, bpv, sp, note in self.rows:
            bs = f"{b:9.1f}" if b is not None else f"{'':>9}"
            bp = f"{bpv:8.0f}" if bpv is not None else f"{'':>8}"
            print(f"{name:<34}{rec:10.4f}{med:9.3f}{p95:9.3f}{cpu:9.3f}{bs}{bp}{sp:9.1f}  {note}")
        sys.stdout.flush()


def run_size(n: int, dim: int, n_queries: int, args, workdir: Path) -> None:
    print(f"\n=== N={n:,} x dim={dim}, {n_queries} held-out queries ===", flush=True)
    t0 = time.perf_counter()
    model = SyntheticFeatures(dim, seed=args.seed)
    base = model.sample(n, args.seed + 1)
    queries = model.sample(n_queries, args.seed + 2).astype(np.float32)
    print(f"generated in {time.perf_counter() - t0:.1f}s ({base.nbytes / 2**20:.0f} MiB float16)")
    table = Table()

    # Exact: ground truth (batch) and single-query latency on a subset.
    t0 = time.perf_counter()
    exact = ExactIndex(dim)
    add_in_chunks(exact, base)
    exact.build()
    exact_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    truth, tsc = exact.query_batch(queries, 100)
    print(f"exact ground truth for {n_queries} queries (batched): {time.perf_counter() - t0:.1f}s")
    rand = exact.get_vectors(np.arange(0, n, max(1, n // 2000)))
    pair = (rand[: len(rand) // 2] * rand[len(rand) // 2 : 2 * (len(rand) // 2)]).sum(axis=1)
    print(
        "difficulty: mean cosine of the 1st/10th/11th/100th neighbour "
        f"{tsc[:, 0].mean():.3f}/{tsc[:, 9].mean():.3f}/{tsc[:, 10].mean():.3f}/"
        f"{tsc[:, 99].mean():.3f}; random pairs {np.median(pair):.3f} (median)"
    )
    truth = truth[:, :K]
    sub = queries[: args.exact_queries]
    got, wall, cpu = timed_queries(exact, sub)
    exact_med = float(np.median(wall))
    exact, ram = loaded_ram_bytes(exact, workdir / "exact.idx")
    table.add(
        "exact",
        recall(got, truth[: len(sub)]),
        wall,
        cpu,
        exact_build,
        ram / n,
        exact_med,
        f"{len(sub)} queries timed",
    )
    del exact
    gc.collect()

    # LSH: one hashing, several operating points via tune().
    t0 = time.perf_counter()
    lsh = LSHIndex(dim, seed=args.seed, target_recall=0.95)
    add_in_chunks(lsh, base)
    lsh.build()
    lsh_build = time.perf_counter() - t0
    lsh, ram = loaded_ram_bytes(lsh, workdir / "lsh.idx")  # vectors memory-mapped from here on
    mem = lsh.memory_bytes()
    detail = ", ".join(f"{k}={v / n:.0f}" for k, v in mem.items() if k != "vectors_ram")
    print(f"LSH layout: B={lsh._B} L={lsh._L} b={lsh._b}; RAM per vector by array: {detail}")
    for target in args.lsh_targets:
        t1 = time.perf_counter()
        probes, rerank = lsh.tune(target)
        tune_s = time.perf_counter() - t1
        got, wall, cpu = timed_queries(lsh, queries)
        build = lsh_build if target == 0.95 else None
        table.add(
            f"lsh target={target}",
            recall(got, truth),
            wall,
            cpu,
            build,
            ram / n,
            exact_med,
            f"probes={probes} rerank/10={rerank} (tune {tune_s:.1f}s)",
        )
        table.print("(partial)") if args.verbose else None
    del lsh
    gc.collect()

    # Annoy: one forest, several search_k.
    if not args.skip_annoy:
        t0 = time.perf_counter()
        ann = AnnoyIndex(dim, seed=args.seed, n_trees=args.annoy_trees)
        add_in_chunks(ann, base)
        ann.build()
        ann_build = time.perf_counter() - t0
        ann, ram = loaded_ram_bytes(ann, workdir / "annoy.idx")
        forest = ann.forest_bytes() / n
        auto = ann._search_k
        for mult in args.annoy_mults:
            ann._search_k = max(1, int(auto * mult))
            got, wall, cpu = timed_queries(ann, queries)
            table.add(
                f"annoy trees={ann._n_trees} k_s={ann._search_k}",
                recall(got, truth),
                wall,
                cpu,
                ann_build if mult == 1 else None,
                ram / n,
                exact_med,
                f"+{forest:.0f} B/vec forest (mmapped after load)"
                + (" [auto search_k]" if mult == 1 else ""),
            )
        del ann
        gc.collect()
    table.print(f"Results N={n:,} dim={dim} (k=10; times per single query)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k x 512 smoke run")
    ap.add_argument("--sizes", default="100000x4096,1000000x512", help="comma list of NxD")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--exact-queries", type=int, default=40, help="single exact queries timed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-annoy", action="store_true")
    ap.add_argument("--annoy-trees", type=int, default=None)
    ap.add_argument(
        "--annoy-mults", default="0.25,0.5,1,2", help="search_k multiples of the auto one"
    )
    ap.add_argument("--lsh-targets", default="0.9,0.95,0.98")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    args.lsh_targets = [float(x) for x in args.lsh_targets.split(",")]
    args.annoy_mults = [float(x) for x in args.annoy_mults.split(",")]
    sizes = "20000x512" if args.quick else args.sizes
    if args.quick:
        args.queries = min(args.queries, 200)
    print(
        f"numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    with tempfile.TemporaryDirectory(prefix="imgfinder-bench-") as tmp:
        for spec in sizes.split(","):
            n, dim = (int(x) for x in spec.lower().split("x"))
            run_size(n, dim, args.queries, args, Path(tmp))
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()

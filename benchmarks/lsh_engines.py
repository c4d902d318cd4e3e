"""The LSH query engines side by side on one build: numpy against compiled (numba), alternately.

    .venv/bin/python benchmarks/lsh_engines.py --dist heavy-tail --size 1000000x512 \
        [--cache /tmp/lsh-engines] [--queries 150] [--reps 2]

Generates one distribution of benchmarks/search.py (broad, heavy-tail, fitted, ...) at the
given size, its exact 10-NN for held-out queries, builds and saves an LSHIndex, all once
into --cache (minutes at 1M; later runs load them). Then, on that one index and setting,
single queries run alternately on the numpy engine (`_force_numpy`) and the compiled one,
`--reps` times: recall@10, median thread-CPU ms per query, whether both return the same rows
and scores; then `query_batch` process-CPU ms per query for each engine. Read the CPU
columns on a shared machine; the load average is printed beside each line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import search as S  # noqa: E402

from imgfinder.core.index import LSHIndex, _numba  # noqa: E402


def prepare(name: str, n: int, dim: int, out: Path) -> None:
    if (out / "lsh.idx").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    if name == "fitted":
        f, _, _ = S.FittedFeatures.fit(np.load(S.REAL_CACHE), seed=0)
        model = f if dim == f.dim else S.Projected(f, dim, 0)
    else:
        model = S.DISTS[name][1](dim, 0)
    t0 = time.perf_counter()
    base = model.sample(n, 1)
    queries = S.unit32(model.sample(300, 2))
    truth, _ = S.exact_truth(S.unit32(base), queries)
    np.save(out / "queries.npy", queries)
    np.save(out / "truth.npy", truth)
    idx = LSHIndex(dim, seed=0)
    for lo in range(0, n, 50_000):
        idx.add(np.arange(lo, min(n, lo + 50_000)), base[lo : lo + 50_000])
    idx.build()
    idx.save(out / "lsh.idx")
    print(f"generated and built in {time.perf_counter() - t0:.0f} s: {idx._summary()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dist", default="heavy-tail")
    ap.add_argument("--size", default="1000000x512")
    ap.add_argument("--cache", default="/tmp/lsh-engines")
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    n, dim = (int(x) for x in args.size.lower().split("x"))
    d = Path(args.cache) / f"{args.dist}_{n}x{dim}"
    prepare(args.dist, n, dim, d)
    t0 = time.perf_counter()
    if _numba.get(wait=True) is None:
        sys.exit("the compiled engine is not available (numba missing or IMGFINDER_NUMBA=0)")
    print(f"kernels loaded in {time.perf_counter() - t0:.2f} s")
    idx = LSHIndex.load(d / "lsh.idx", verify_vectors=False)
    qs = np.load(d / "queries.npy")[: args.queries]
    truth = np.load(d / "truth.npy")[: args.queries]
    print(f"{args.dist} at {n:,} x {dim}: {idx._summary()}; stored {idx.measured_recall}")

    def run(force: bool):
        idx._force_numpy = force
        idx.query(qs[0], 10)
        out, cpu = [], []
        for q in qs:
            c0 = time.thread_time()
            out.append(idx.query(q, 10))
            cpu.append(time.thread_time() - c0)
        rec = np.mean([len(np.intersect1d(o[0], t)) / 10 for o, t in zip(out, truth, strict=True)])
        return out, rec, float(np.median(cpu)) * 1e3

    for rep in range(args.reps):
        got = {}
        for force in (True, False):
            got[force] = run(force)
            name = "numpy   " if force else "compiled"
            print(
                f"rep {rep} {name}: recall@10 {got[force][1]:.4f}, median thread-CPU "
                f"{got[force][2]:.3f} ms/query (load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        same = all(
            np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
            for a, b in zip(got[True][0], got[False][0], strict=True)
        )
        print(f"rep {rep}: same rows and scores: {same}")
    for force in (True, False):
        idx._force_numpy = force
        c0 = time.process_time()
        idx.query_batch(qs, 10)
        ms = (time.process_time() - c0) / len(qs) * 1e3
        name = "numpy   " if force else "compiled"
        print(f"query_batch {name}: {ms:.3f} ms/query process CPU (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()

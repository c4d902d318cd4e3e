"""LSH build (hash + calibration + held-out recall check) time on the sets the tests and
small libraries use, and what the build chose (LSH setting or the exact-search fallback).

    python benchmarks/lsh_build.py [--sets 1k,2.5k-drifted,10k] [--repeat 1]

Sets (seeded, random vectors, no model):
* 1k: 1,000 x 64 rows of `synthetic.make_dataset(3000, 64, 40, seed=5)` (the test suite's
  small set);
* 3k: all 3,000 rows of it;
* 2.5k-drifted: those 1,000 plus 1,500 rows from a few dense clusters (the drift test's set);
* 10k: 10,000 x 4096 clustered ReLU-like features (`synthetic.SyntheticFeatures`, as
  `dupes_scan.py` makes them);
* 100k: 100,000 x 4096 of the same (minutes; `dupes_scan.py` prints the build time too).

Prints process CPU and wall seconds per build and the load average: the machine is shared, so
compare builds of two versions run one after the other, CPU columns first.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import synthetic  # noqa: E402


def make_set(name: str) -> np.ndarray:
    if name in ("1k", "3k", "2.5k-drifted"):
        base, _ = synthetic.make_dataset(3000, 64, 40, seed=5)
        if name == "3k":
            return base
        if name == "1k":
            return base[:1000]
        rng = np.random.default_rng(1)
        shifted = np.abs(rng.standard_normal((1500, 64))) * 0.2
        shifted[:, :8] += 5.0
        return np.concatenate([base[:1000], shifted.astype(np.float32)])
    n = {"10k": 10_000, "100k": 100_000}[name]
    return synthetic.SyntheticFeatures(4096, seed=0).sample(n, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="1k,2.5k-drifted,10k")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("-v", action="store_true", help="log the calibration's steps")
    args = ap.parse_args()
    if args.v:
        logging.basicConfig(level=logging.INFO)
    try:
        import torch  # noqa: PLC0415

        torch.set_num_threads(1)
    except ImportError:
        pass
    from imgfinder.core.index import LSHIndex  # noqa: PLC0415

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name in args.sets.split(","):
        x = make_set(name)
        for _ in range(args.repeat):
            idx = LSHIndex(x.shape[1], seed=0)
            for lo in range(0, len(x), 8192):
                idx.add(np.arange(lo, min(len(x), lo + 8192)), x[lo : lo + 8192])
            t0, c0 = time.perf_counter(), time.process_time()
            idx.build()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            rec = idx.measured_recall or {}
            mode = "exact search" if rec.get("exact") else idx._summary()
            print(
                f"{name:>13} {len(x):>7} x {x.shape[1]:<5} build {cpu:6.1f} s CPU "
                f"{wall:6.1f} s wall; recall@10 {rec.get('recall_at_10', float('nan')):.3f} "
                f"on {int(rec.get('queries', 0))}; {mode}"
            )
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

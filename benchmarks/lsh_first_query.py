"""First LSH queries in a fresh process: what the compiled (numba) engine costs at start-up.

    .venv/bin/python benchmarks/lsh_first_query.py [--n 100000] [--dim 512] [--runs 3]

Builds one index (broad clusters, benchmarks/synthetic.py) and saves it, then, each in a new
process and `--runs` times (median shown), loads it and times:

* `single, numpy`: the first `query` with IMGFINDER_NUMBA=0 (the baseline);
* `single, default`: the first `query` as `imgfinder search` runs it (numba not imported);
* `single, GUI (cold / warm cache)`: `_numba.preload()` as the GUI calls it once its window
  is up, then the first `query` at once (answered by the numpy engine while the kernels load
  on a background thread), and when the kernels are in (load seconds);
* `batch of 256 (cold / warm cache)`: the first `query_batch`, made to wait for the kernels
  as a batch large enough does (the duplicate scan's chunks; `_COMPILED_WORK`), compiled
  when the cache is cold, against the same batch with IMGFINDER_NUMBA=0.

Cold: an empty NUMBA_CACHE_DIR; warm: one filled by an earlier process. Wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CHILD = r"""
import json, sys, time
t_start = time.perf_counter()
import numpy as np
from imgfinder.core.index import LSHIndex
from imgfinder.core.index import _numba
mode, path, qpath = sys.argv[1], sys.argv[2], sys.argv[3]
qs = np.load(qpath)
idx = LSHIndex.load(path, verify_vectors=False)
out = {"import_load_s": time.perf_counter() - t_start}
if mode == "preload":
    _numba.preload()
t0 = time.perf_counter()
if mode == "batch":
    idx._COMPILED_WORK = 0  # as a batch large enough to load the kernels (the dupe scan's)
    idx.query_batch(qs, 10)
else:
    idx.query(qs[0], 10)
out["first_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
idx.query(qs[1], 10)
out["second_s"] = time.perf_counter() - t0
if mode == "preload":
    th = _numba._state["thread"]
    if th is not None:
        th.join()
    out["kernels_in_s"] = time.perf_counter() - t0 + out["first_s"] + out["second_s"]
out["numba_imported"] = "numba" in sys.modules
print(json.dumps(out))
"""


def child(mode: str, idx: Path, qs: Path, env: dict) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(idx), str(qs)],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import numpy as np
    from synthetic import BroadClusters

    from imgfinder.core.index import LSHIndex

    print(f"load average {os.getloadavg()[0]:.1f} at start (shared machine; wall times)")
    with tempfile.TemporaryDirectory(prefix="imgfinder-firstq-") as tmp:
        tmp = Path(tmp)
        model = BroadClusters(args.dim, seed=0)
        base = model.sample(args.n, 1)
        qs = model.sample(256, 2).astype(np.float32)
        np.save(tmp / "q.npy", qs)
        t0 = time.perf_counter()
        idx = LSHIndex(args.dim, seed=0)
        idx.add(np.arange(args.n), base)
        idx.build()
        idx.save(tmp / "x.idx")
        print(
            f"built {args.n:,} x {args.dim} in {time.perf_counter() - t0:.0f} s: {idx._summary()}"
        )
        path, qp = tmp / "x.idx", tmp / "q.npy"
        off = {"IMGFINDER_NUMBA": "0"}
        rows = []

        def cold_env() -> dict:
            return {"NUMBA_CACHE_DIR": tempfile.mkdtemp(dir=tmp, prefix="cold-")}

        warm = {"NUMBA_CACHE_DIR": str(tmp / "warm")}
        child("batch", path, qp, warm)  # fill the warm cache
        cases = [
            ("single, numpy (IMGFINDER_NUMBA=0)", "single", lambda: off),
            ("single, default (imgfinder search)", "single", cold_env),
            ("single, GUI preload, cold cache", "preload", cold_env),
            ("single, GUI preload, warm cache", "preload", lambda: warm),
            ("batch of 256, numpy", "batch", lambda: off),
            ("batch of 256, cold cache", "batch", cold_env),
            ("batch of 256, warm cache", "batch", lambda: warm),
        ]
        for name, mode, env in cases:
            got = [child(mode, path, qp, env()) for _ in range(args.runs)]
            med = {k: statistics.median(g[k] for g in got) for k in got[0] if k != "numba_imported"}
            rows.append((name, med, got[0]["numba_imported"]))
    print(
        f"\n{'case':<38}{'import+load s':>14}{'1st query ms':>14}{'2nd query ms':>14}"
        f"{'kernels in s':>14}  numba imported"
    )
    for name, m, imp in rows:
        k = f"{m['kernels_in_s']:14.2f}" if "kernels_in_s" in m else " " * 14
        print(
            f"{name:<38}{m['import_load_s']:14.2f}{m['first_s'] * 1e3:14.1f}"
            f"{m['second_s'] * 1e3:14.1f}{k}  {imp}"
        )
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()

"""Wall time of CLI commands in a fresh process, against bare `python -c pass` in the same run.

    python benchmarks/cli_startup.py [--photos N] [--runs R]

Builds a library of N generated JPEGs in a temporary data dir (indexed once, which also
remembers the model id), then times `status`, `index` with nothing new, and a cold `search`
(a new process: imports, model load, index load, one query), each R times (median shown).
Goals (issue 16): `status` within 0.5 s of bare Python; a cold `search` <= 3 s on a quiet
machine. Weights: IMGFINDER_WEIGHTS, else a seeded random-init ResNet50 (speed does not
depend on the weight values).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import table, weights_for_bench  # noqa: E402


def wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from tests.imgutil import make_image_set

    tmp = Path(tempfile.mkdtemp(prefix="imgfinder-cli-bench-"))
    weights, wdesc = weights_for_bench(tmp)
    photos = tmp / "photos"
    make_image_set(photos, args.photos, size=(640, 480), prefix="IMG")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    py = sys.executable
    cli = [py, "-m", "imgfinder", "--data-dir", str(tmp / "data"), "--weights", weights]
    cli += ["--device", "cpu"]
    t0 = time.perf_counter()
    subprocess.run([*cli, "index", str(photos)], cwd=ROOT, env=env, check=True, capture_output=True)
    print(f"setup: indexed {args.photos} photos in {time.perf_counter() - t0:.1f} s ({wdesc})")
    query = str(photos / "IMG_0007.jpg")
    cases = [
        ("python -c pass", [py, "-c", "pass"]),
        ("imgfinder status", [*cli, "status"]),
        ("imgfinder index (nothing new)", [*cli, "index"]),
        ("imgfinder search (cold process)", [*cli, "search", query, "-k", "10"]),
    ]
    times = {name: [] for name, _ in cases}
    for _ in range(args.runs):  # interleaved, so a burst of load hits every case alike
        for name, cmd in cases:
            times[name].append(wall(cmd, env))
    base = statistics.median(times["python -c pass"])
    rows = []
    for name, _ in cases:
        med = statistics.median(times[name])
        rows.append(
            {
                "command": name,
                "median s": f"{med:.2f}",
                "min s": f"{min(times[name]):.2f}",
                "vs python -c pass": f"+{med - base:.2f} s",
            }
        )
    print(table(rows, ["command", "median s", "min s", "vs python -c pass"]))
    status = statistics.median(times["imgfinder status"]) - base
    search = statistics.median(times["imgfinder search (cold process)"])
    print(
        f"goals: status within 0.5 s of bare Python: {'met' if status <= 0.5 else 'NOT met'} "
        f"(+{status:.2f} s); cold search <= 3 s: {'met' if search <= 3 else 'NOT met'} "
        f"({search:.2f} s); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

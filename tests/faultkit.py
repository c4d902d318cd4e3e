"""Fault injection for the library's files: damage them the ways disks and crashes do.

Shared by tests/test_faults.py (small trial counts, part of `make test`) and
benchmarks/faults.py (many trials, prints trials -> failures).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VECTOR_DAMAGE = ("truncate64", "remove", "header", "overwrite", "nan")
CATALOG_DAMAGE = ("zero", "random_middle", "half", "header")
INDEX_DAMAGE = ("truncate", "garble", "remove")


def damage_vectors(path: Path, mode: str, rng: random.Random) -> None:
    size = path.stat().st_size
    if mode == "truncate64":
        os.truncate(path, 64)
    elif mode == "remove":
        path.unlink()
    elif mode == "header":
        with open(path, "r+b") as fh:
            fh.write(b"garbage!" * 4)
    elif mode == "overwrite":  # 50 KB of random bytes in the middle (or a third of a small file)
        n = min(50_000, max(1, (size - 64) // 3))
        start = 64 + rng.randrange(max(1, size - 64 - n))
        with open(path, "r+b") as fh:
            fh.seek(start)
            fh.write(rng.randbytes(n))
    elif mode == "nan":  # float16 NaNs over part of one row
        with open(path, "r+b") as fh:
            fh.seek(64 + rng.randrange(max(1, (size - 64) // 2)))
            fh.write(np.full(64, np.nan, np.float16).tobytes())
    else:
        raise ValueError(mode)


def damage_catalog(path: Path, mode: str, rng: random.Random) -> None:
    # fold the WAL in first so the damage hits the real content
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = path.stat().st_size
    if mode == "zero":
        os.truncate(path, 0)
    elif mode == "half":
        os.truncate(path, size // 2)
    elif mode == "header":
        with open(path, "r+b") as fh:
            fh.write(rng.randbytes(100))
    elif mode == "random_middle":
        with open(path, "r+b") as fh:
            fh.seek(size // 3)
            fh.write(rng.randbytes(max(4096, size // 3)))
    else:
        raise ValueError(mode)


def damage_index(path: Path, mode: str, rng: random.Random) -> None:
    if mode == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    elif mode == "garble":
        with open(path, "r+b") as fh:
            fh.seek(path.stat().st_size // 2)
            fh.write(rng.randbytes(4096))
    elif mode == "remove":
        path.unlink()
    else:
        raise ValueError(mode)


def vectors_by_path(lib) -> dict[str, np.ndarray]:
    """path -> stored vector (float16) of every usable image."""
    pairs = lib.catalog.vector_rows(lib.model_id)
    rows = lib.catalog.images([i for i, _ in pairs])
    vecs = lib.store().get(np.asarray([r for _, r in pairs], dtype=np.int64))
    return {rows[i].path: v for (i, _), v in zip(pairs, vecs)}


def check_consistent(lib) -> list[str]:
    """Problems of an opened library: catalog integrity, rows past the store, bad rows."""
    problems = []
    ok = [r[0] for r in lib.catalog.execute("PRAGMA quick_check")]
    if ok != ["ok"]:
        problems.append(f"catalog quick_check: {ok[:2]}")
    store = lib.store()
    pairs = lib.catalog.vector_rows(lib.model_id)
    n = len(store)
    past = sum(1 for _, r in pairs if r >= n)
    if past:
        problems.append(f"{past} rows past the end of the vector file")
    if pairs:
        bad = store.verify(np.asarray([r for _, r in pairs]))
        if len(bad):
            problems.append(f"{len(bad)} damaged rows")
    dup = lib.catalog.execute(
        "SELECT COUNT(*) FROM (SELECT path FROM images GROUP BY path HAVING COUNT(*) > 1)"
    ).fetchone()[0]
    if dup:
        problems.append(f"{dup} duplicate paths")
    return problems


def kill_at_random(
    cmd: list[str], rng: random.Random, lo: float, hi: float, env=None
) -> tuple[int | None, str]:
    """Start `cmd`, SIGKILL it after a random delay in [lo, hi) s; (returncode or None, stderr)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or dict(os.environ)
    )
    deadline = time.monotonic() + rng.uniform(lo, hi)
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    return (None if killed else proc.returncode), err.decode("utf-8", "replace")


def imgfinder_cmd(data: Path, weights: Path, input_size: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "imgfinder",
        "--data-dir",
        str(data),
        "--weights",
        str(weights),
        "--device",
        "cpu",
        "--input-size",
        str(input_size),
        *args,
    ]

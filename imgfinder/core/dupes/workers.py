"""Worker processes for the duplicate finder without the CNN: signing and the geometric check.

Why processes and not threads: most of each job is OpenCV and libjpeg, which release the
Python lock, but the numpy/PIL steps between them hold it, and threads queue for it. Measured
on the 2-core test box while it was idle (benchmarks/dupes_copies.py --issue-size corpus,
3,524 files): signing took 2.25 s wall with one thread and 1.85-1.98 s with two (and 0.5 s
more CPU: the lock changing hands), against 1.26 s with two processes, their start included;
two threads of the geometric check were no faster than one (1.9-2.4 s against 1.9 s for the
440 pairs).

Workers are never forked from the program itself (the GUI and the CLI have threads, and a
forked child of a threaded process can inherit a lock some other thread held): they come from
a fork server (a clean process that imports what they need once) or, on Windows, are
spawned; they are started once per process and reused by later jobs (`pool()`), and each
keeps BLAS and OpenCV to one thread, so N workers use N cores. Starting costs about 0.25 s,
so small jobs stay in threads (`use_processes`).
A worker that dies (a decoder crashing on a hostile file, the OOM killer) breaks the pool:
callers catch BrokenProcessPool, `reset()` and decide what the lost work means (sigindex
retries the files one by one and records the one that crashes as failed; the geometric check
leaves those pairs unverified). Workers only read photos; they write nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

log = logging.getLogger(__name__)

__all__ = [
    "BrokenProcessPool",
    "pool",
    "processes_allowed",
    "reset",
    "submit",
    "use_processes",
    "worker_count",
]

ENV = "IMGFINDER_WORKER_PROCESSES"  # "0": threads only (debugging, restricted platforms)
MIN_SIGN_FILES = 1000  # files to sign from which processes pay for their start
MIN_VERIFY_PAIRS = 200  # pairs to check geometrically from which they pay

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def worker_count() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def use_processes(items: int, minimum: int, requested: bool | None = None) -> bool:
    """Whether a job of `items` runs in worker processes: `requested` when given (True/False),
    else when it has at least `minimum` items and `processes_allowed()`."""
    if requested is not None:
        return requested
    return items >= minimum and processes_allowed()


def processes_allowed(requested: bool | None = None) -> bool:
    """Whether worker processes may be used at all, whatever the job's size: `requested` when
    given, else when the machine has more than one core and the IMGFINDER_WORKER_PROCESSES
    environment variable is not "0" (a job whose size is only known later, such as the
    geometric check, decides its threshold itself)."""
    if requested is not None:
        return requested
    return os.environ.get(ENV, "").strip() != "0" and (os.cpu_count() or 1) > 1


def pool(workers: int | None = None) -> ProcessPoolExecutor:
    """The shared pool of spawned workers (started on first use, restarted after reset)."""
    global _pool, _pool_size
    n = workers or worker_count()
    with _lock:
        if _pool is not None and _pool_size != n:
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None
        if _pool is None:
            _pool = ProcessPoolExecutor(n, mp_context=_context(), initializer=_init_worker)
            _pool_size = n
        return _pool


# imported once by the fork server, so each worker forked from it starts at once ("__main__":
# the program's main script, which a new worker would otherwise import again)
PRELOAD = (
    "__main__",
    "imgfinder.core.dupes.workers",
    "imgfinder.core.dupes.sigindex",
    "imgfinder.core.dupes.geometry",
    "cv2",
    "threadpoolctl",
)


def _context():
    """A fork server where there is one (Linux, macOS): a clean process started once, which
    imports PRELOAD (~0.25 s) and forks each worker from that; else spawn (Windows)."""
    import multiprocessing  # noqa: PLC0415

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        return ctx
    return multiprocessing.get_context("spawn")


def reset(wait: bool = False) -> None:
    """Drop the shared pool (after a BrokenProcessPool, or to free its processes); `wait`:
    until its processes have exited (their CPU time then shows in os.times())."""
    global _pool
    with _lock:
        old, _pool = _pool, None
    if old is not None:
        old.shutdown(wait=wait, cancel_futures=True)


def stop_all() -> None:
    """Stop the workers and the fork server (as when the program exits): the next job starts
    from scratch (benchmarks measure a fresh CLI command with this)."""
    reset(wait=True)
    import multiprocessing.forkserver as fs  # noqa: PLC0415

    stop = getattr(fs._forkserver, "_stop", None)  # private; absent on some versions
    if stop is not None:
        stop()


def cpu_seconds() -> float | None:
    """CPU seconds used so far by the live workers and the fork server (Linux /proc; None
    elsewhere). Exited workers count in os.times() of their parent, which for forked workers
    is the fork server, not this process."""
    pids = []
    with _lock:
        if _pool is not None:
            pids += list(getattr(_pool, "_processes", None) or {})
    import multiprocessing.forkserver as fs  # noqa: PLC0415

    server = getattr(fs._forkserver, "_forkserver_pid", None)
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for pid in [*pids, *([server] if server else [])]:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        used = fields[11:13] if pid != server else fields[11:15]  # + its exited workers
        total += sum(int(v) for v in used) / ticks
    return total


def submit(workers: int | None, fn, *args):
    """pool(workers).submit(fn, *args), restarting a broken pool once; a pool that cannot
    take the job gives a future holding the error (the caller treats it as a lost chunk)."""
    for attempt in (0, 1):
        try:
            return pool(workers).submit(fn, *args)
        except (BrokenProcessPool, RuntimeError) as exc:  # broken, or shut down elsewhere
            reset()
            if attempt:
                fut: Future = Future()
                fut.set_exception(exc)
                return fut
    raise AssertionError("unreachable")


def warm(workers: int | None = None, *, background: bool = False) -> None:
    """Start the workers now (they import while the caller does other work). Starting the
    first one waits for the fork server (~0.2 s): `background` does that in a thread, so
    the caller goes on at once."""
    if background:
        threading.Thread(target=_warm_quietly, args=(workers,), daemon=True).start()
        return
    p = pool(workers)
    for _ in range(workers or worker_count()):
        p.submit(os.getpid)


def _warm_quietly(workers: int | None) -> None:
    try:
        warm(workers)
    except (BrokenProcessPool, RuntimeError, OSError) as exc:  # the job's own submit retries
        log.debug("could not start the workers ahead: %s", exc)


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextmanager
def one_blas_thread():
    """BLAS (numpy's OpenBLAS) at one thread in this process while the block runs.

    The scan without the CNN multiplies blocks of a few thousand rows, where OpenBLAS's helper
    thread costs more than it gives: the first such call of a process, measured on the 2-core
    box while other jobs ran, took 0.9-1.5 s instead of 0.09 s single-threaded (its helper
    spinning against the caller). The limit is process-wide: overlapping blocks (threads)
    are counted and the last one out restores the setting."""
    global _blas_users, _blas_limiter
    with _blas_lock:
        _blas_users += 1
        if _blas_users == 1:
            try:
                from threadpoolctl import threadpool_limits  # noqa: PLC0415

                _blas_limiter = threadpool_limits(1, user_api="blas")
            except Exception as exc:  # noqa: BLE001 - never fail a scan over a speed setting
                log.debug("cannot limit BLAS threads: %s", exc)
                _blas_limiter = None
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def verify_in_batches(triples, verify_batch, size, cancel, stats, started):
    """Copy scores of (a, b, orientation) pairs (in locality order) by `verify_batch`, `size`
    at a time, all chunks submitted at once (every worker busy) and collected in order:
    progress and the cancel check per chunk (None when cancelled). A chunk whose worker died
    scores NaN (not verified, not cached: the next scan checks it again)."""
    from imgfinder.core.types import Progress  # noqa: PLC0415

    chunks = [triples[lo : lo + size] for lo in range(0, len(triples), size)]
    futures = [verify_batch(chunk) for chunk in chunks]
    out: list[float] = []
    decoded = lost = 0
    try:
        for chunk, fut in zip(chunks, futures):
            if cancel.is_set():
                return None
            try:
                scores, n = fut.result()
                decoded += n
            except (BrokenProcessPool, RuntimeError) as exc:
                log.warning(
                    "a geometric-check worker failed (%s); %d pairs left unverified",
                    exc,
                    len(chunk),
                )
                scores = [float("nan")] * len(chunk)
                lost += len(chunk)
            out.extend(scores)
            yield Progress.since(
                "verify", len(out), len(triples), started, "checking candidate copies"
            )
    finally:
        for fut in futures:
            fut.cancel()
    stats["verify_batches"] = len(chunks)
    stats["verify_batch_decodes"] = decoded
    if lost:
        stats["verify_lost"] = lost
    return out


# -- in the worker -----------------------------------------------------------------------------
def _init_worker() -> None:
    from imgfinder.core.memtune import tune_allocator  # noqa: PLC0415

    tune_allocator()
    single_thread_libraries()
    from imgfinder.core.dupes import geometry, sigindex  # noqa: F401, PLC0415 (import once, now)


def single_thread_libraries() -> None:
    """One BLAS and one OpenCV thread in this process (each worker is one core's worth)."""
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass
    try:
        import cv2  # noqa: PLC0415

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass


def sign_chunk(paths: list[str]) -> list[tuple]:
    """sigindex.sign_file of each path (in a worker)."""
    from imgfinder.core.dupes import sigindex  # noqa: PLC0415

    return [sigindex.sign_file(p) for p in paths]


_verifiers: dict = {}
# described photos a worker keeps (~1.1 MB each at 384 px): a chunk's pairs touch at most
# 2 x pairs.BATCH_PAIRS photos, and pairs come in locality order
WORKER_CACHE = 64


def verify_chunk(detectors: tuple[str, ...], items: list[tuple[str, str, int, bool]]):
    """(copy scores, photos decoded) of (path a, path b, orientation, handedness sure) pairs,
    by this worker's GeometricVerifier (its cache of described photos lives on between
    chunks)."""
    from imgfinder.core.dupes.geometry import GeometricVerifier  # noqa: PLC0415

    checker = _verifiers.get(detectors)
    if checker is None:
        checker = _verifiers[detectors] = GeometricVerifier(WORKER_CACHE, detectors=detectors)
    before = checker.decoded
    scores = [checker(a, b, o, sure) for a, b, o, sure in items]
    return scores, checker.decoded - before

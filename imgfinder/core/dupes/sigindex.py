"""Duplicates without the CNN: `imgfinder index --signatures-only` and the scan over its rows.

`index_signatures` walks the library folders like `Library.index()` but only reads each new
or changed file, hashes it (the exact tier) and decodes it small (JPEG DCT-scaled to about
GRID px) for the duplicate signature (the same-photo tier's candidates). No model, no torch:
it runs at the speed of reading and decoding thumbnails. Each file becomes a catalog row of
status `catalog.SIGNED`: a content hash and size, no vector and no model, so

* `dupes` works on those rows at once for the exact and same-photo tiers (`scan_signatures`,
  also torch-free); the similar-shot tier needs CNN vectors and says so;
* a later plain `index` sees rows without this model's vector and extracts them: the CNN
  decode is the only read it repeats (it needs the larger pixels anyway; the stored
  signature is replaced by the one from that decode, same version).

Files are written per batch in one transaction each, so a cancelled or killed run keeps what
it did; the writer lock is held from start to end, as for `index`. From workers.MIN_SIGN_FILES
files on, they are read and signed in worker processes (workers.py; only this process
writes), the first batch in threads while the workers start; the scan's geometric check
likewise, from workers.MIN_VERIFY_PAIRS pairs. Unchanged files (same size
and mtime) that already have a hash and a signature are not read again. Files that cannot be
read become 'failed' rows with the reason, as `index` records them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from imgfinder.core import decode, jpegfast, scan
from imgfinder.core.catalog import SIGNED, Catalog, recover_catalog, restore_missing_catalog
from imgfinder.core.dupes import signature, store
from imgfinder.core.dupes import workers as worker_procs
from imgfinder.core.types import IndexSummary, Progress
from imgfinder.errors import CatalogDamagedError, DecodeError
from imgfinder.lock import WriterLock

log = logging.getLogger(__name__)

BATCH = 256
CHUNK = 32  # files per task sent to a worker process
WARM_FROM = 1000  # photos from which a scan starts its check's workers before it has pairs
CRASHED = "the decoder crashed reading this file (it was read in a separate process)"
CATALOG_NAME = "catalog.sqlite"
SIMILAR_NEEDS_VECTORS = (
    "the similar-shot tier needs the CNN vectors, and this library has duplicate signatures "
    "only (`index --signatures-only`); run `imgfinder index` to add them"
)


def _workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def open_catalog(data_dir: Path, lock: WriterLock) -> Catalog:
    """The data directory's catalog (created if new, recovered if damaged, as Library does)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CATALOG_NAME
    try:
        catalog = Catalog(path)
    except CatalogDamagedError as exc:
        with lock.hold("recovering the catalog", timeout=30):
            rec = recover_catalog(path, exc.reason)
        log.warning("%s", rec.message())
        return Catalog(path)
    if catalog.backup_path.exists() and not catalog.roots():
        with lock.hold("restoring the catalog", timeout=30):
            restore_missing_catalog(catalog)
    return catalog


def add_root(catalog: Catalog, path: str | os.PathLike) -> str:
    """Add a library folder (Catalog.add_folder: the library's rules) and back it up."""
    sp = catalog.add_folder(path)
    catalog.write_backup()
    return sp


def sign_file(path: str) -> tuple[tuple, np.ndarray | None]:
    """(catalog record, signature or None) of one file; never raises for a bad file."""
    size = mtime_ns = 0
    try:
        st = os.stat(path)
        size, mtime_ns = st.st_size, st.st_mtime_ns
        data = decode.read_file(path)
        h = decode.content_hash(data)
        img, width, height = jpegfast.open_small(data, signature.GRID, path_hint=path)
        sig = signature.signature_of(img)
        return (path, size, mtime_ns, h, width, height, SIGNED, None), sig
    except DecodeError as exc:
        reason = exc.reason
    except OSError as exc:  # deleted mid-run and the like
        reason = decode._os_error_reason(exc)
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not stop the run
        log.exception("unexpected failure reading %s", path)
        reason = f"unexpected error: {exc}"
    return (path, size, mtime_ns, None, None, None, "failed", reason), None


def index_signatures(
    data_dir: str | os.PathLike,
    add_paths: Iterable[str | os.PathLike] = (),
    *,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    processes: bool | None = None,
) -> Generator[Progress, None, IndexSummary]:
    """Catalog every new or changed photo with its hash and duplicate signature (no CNN).

    `summary.indexed` counts the files read this run. Holds the writer lock throughout
    (LibraryBusyError if another process is indexing). `workers` threads or worker
    processes read the files; `processes` None: processes when there are at least
    worker_procs.MIN_SIGN_FILES files to read (workers.py: they start in ~0.25 s, then run
    without sharing the Python lock)."""
    t0 = time.perf_counter()
    data = Path(data_dir).resolve()
    lock = WriterLock(data)
    catalog = open_catalog(data, lock)
    lock.acquire("indexing duplicate signatures", timeout=2.0)
    try:
        summary = yield from _index_locked(
            catalog, add_paths, cancel or threading.Event(), workers, processes
        )
    finally:
        lock.release()
        catalog.close()
    summary.seconds = time.perf_counter() - t0
    return summary


class _Signer:
    """Signs batches of files (sign_file) in threads, or in chunks in worker processes.

    The first batch is signed in threads while the workers start (~0.25 s, about what two
    threads take for a batch), the rest by the workers.
    A worker that dies breaks the pool: the batch is then signed again one file per task in
    a fresh pool, and a file whose task breaks that pool too is recorded as failed (CRASHED),
    so the next run does not read it again until it changes."""

    THREADS = -1  # generation of futures run in threads

    def __init__(self, threads: ThreadPoolExecutor, n: int, processes: bool):
        self.threads, self.n, self.processes = threads, n, processes
        self.generation = 0  # bumped at each pool reset: older futures are lost
        self.started = False

    def submit(self, batch: list[str]):
        if not self.processes or not self.started:
            futures = [self.threads.submit(sign_file, p) for p in batch]
            if self.processes:
                self.started = True
                try:
                    worker_procs.warm(self.n)
                except (BrokenProcessPool, RuntimeError):
                    self._reset()
            return self.THREADS, futures
        try:
            p = worker_procs.pool(self.n)
            chunks = [batch[i : i + CHUNK] for i in range(0, len(batch), CHUNK)]
            return self.generation, [p.submit(worker_procs.sign_chunk, c) for c in chunks]
        except (BrokenProcessPool, RuntimeError):  # broken, or shut down by a reset elsewhere
            self._reset()
            return self.generation, None

    def results(self, ahead, batch: list[str]) -> list[tuple]:
        generation, futures = ahead
        if generation == self.THREADS:
            return [f.result() for f in futures]
        if futures is None or generation != self.generation:
            generation, futures = self.submit(batch)
        try:
            if futures is None:
                raise BrokenProcessPool("no worker pool")
            return [r for f in futures for r in f.result()]
        except BrokenProcessPool:
            log.warning("a signing worker died; reading this batch's files one at a time")
            self._reset()
            return [self._one(p) for p in batch]

    def _one(self, path: str):
        try:
            return worker_procs.pool(self.n).submit(worker_procs.sign_chunk, [path]).result()[0]
        except (BrokenProcessPool, RuntimeError):
            self._reset()
            log.warning("reading %s crashed the decoder; recorded as failed", path)
            try:
                st = os.stat(path)
                size, mtime_ns = st.st_size, st.st_mtime_ns
            except OSError:
                size = mtime_ns = 0
            return (path, size, mtime_ns, None, None, None, "failed", CRASHED), None

    def _reset(self) -> None:
        worker_procs.reset()
        self.generation += 1

    @staticmethod
    def cancel(ahead) -> None:
        for f in ahead[1] or ():
            f.cancel()


def _index_locked(
    catalog, add_paths, cancel, n_workers, processes
) -> Generator[Progress, None, IndexSummary]:
    summary = IndexSummary()
    for p in add_paths:
        add_root(catalog, p)
    store.ensure_tables(catalog)
    n_workers = n_workers or _workers()
    with ThreadPoolExecutor(n_workers, thread_name_prefix="sigindex") as pool:
        for rid, root in catalog.roots():
            if cancel.is_set():
                break
            if not scan.root_available(root):
                log.warning("library folder %s is not available; keeping its entries", root)
                summary.missing_roots.append(root)
                continue
            yield Progress("scan", 0, None, message=f"scanning {root}")
            existing = catalog.images_under(rid)
            found = [str(f) for f in scan.iter_image_files([root], cancel=cancel)]
            if cancel.is_set():
                break
            todo, sign_only = _changed(found, existing, catalog)
            summary.unchanged += len(found) - len(todo)
            started = time.perf_counter()
            batches = [todo[lo : lo + BATCH] for lo in range(0, len(todo), BATCH)]
            signer = _Signer(
                pool,
                n_workers,
                worker_procs.use_processes(len(todo), worker_procs.MIN_SIGN_FILES, processes),
            )
            # the next batch is read and signed while this one is written (no idle workers)
            ahead = signer.submit(batches[0]) if batches else (0, [])
            done = 0
            try:
                for k, batch in enumerate(batches):
                    got = signer.results(ahead, batch)
                    more = k + 1 < len(batches) and not cancel.is_set()
                    ahead = signer.submit(batches[k + 1]) if more else (0, [])
                    fresh = [r for (r, _), p in zip(got, batch) if p not in sign_only]
                    catalog.write_signed(rid, fresh)
                    sigs = {r[3]: s for r, s in got if s is not None and r[3]}
                    store.save_signatures(catalog, sigs)
                    for r, _ in got:
                        if r[6] == "failed":
                            summary.skipped[r[0]] = r[7]
                        elif r[0] not in sign_only:
                            summary.indexed += 1
                    done += len(batch)
                    yield Progress.since(
                        "signatures",
                        done,
                        len(todo),
                        started,
                        root,
                        already=len(found) - len(todo),
                    )
                    if not more:
                        break
            finally:
                signer.cancel(ahead)  # closed or failed mid-run: drop what was not started
            if cancel.is_set():
                break
            gone = sorted(set(existing) - set(found))
            if gone:
                summary.removed += len(catalog.delete_paths(gone))
    summary.cancelled = cancel.is_set()
    return summary


def _changed(found: list[str], existing: dict, catalog: Catalog) -> tuple[list[str], set[str]]:
    """Files to read: new or changed ones, plus unchanged ones whose signature is missing
    (`sign_only`: their catalog row, with its vector if any, stays as it is)."""
    todo: list[str] = []
    unsigned: list[str] = []
    for p in found:
        row = existing.get(p)
        try:
            st = os.stat(p)
        except OSError:
            todo.append(p)
            continue
        if row is None or row.size != st.st_size or row.mtime_ns != st.st_mtime_ns:
            todo.append(p)
        elif row.status != "failed" and row.hash:
            unsigned.append(p)
    have = store.load_signatures(catalog, [existing[p].hash for p in unsigned])
    sign_only = {p for p in unsigned if existing[p].hash not in have}
    return todo + sorted(sign_only), sign_only


# -- the scan ------------------------------------------------------------------------------
def has_vectors(catalog: Catalog) -> bool:
    """Whether any photo has a CNN vector (else `dupes` runs on signatures alone)."""
    return bool(catalog.model_counts())


def signatures_only(catalog: Catalog) -> bool:
    """A library of `index --signatures-only` photos and no CNN vector: `dupes` scans it
    with scan_signatures, without the model."""
    return not has_vectors(catalog) and bool(catalog.signed_rows())


def scan_signatures(
    catalog: Catalog,
    data_dir: str | os.PathLike,
    *,
    verify: bool = True,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    processes: bool | None = None,
):
    """Candidate pairs of every catalogued photo from hashes and signatures alone (no CNN,
    no torch): the exact and same-photo tiers; `similar` stays NaN. Same generator contract
    and pair cache as session.scan. The geometric check runs in worker processes when it
    has enough pairs (`processes` None) or as told; BLAS keeps to one thread meanwhile
    (worker_procs.one_blas_thread)."""
    from imgfinder.core.dupes import session  # noqa: PLC0415 (session imports this module)

    t0 = time.perf_counter()
    inputs = session.scan_inputs(catalog, Path(data_dir), "", verify=verify, features=False)
    cached = session.cached_scan(inputs)
    if cached is not None:
        cached.seconds = time.perf_counter() - t0
        return cached
    if verify and worker_procs.use_processes(len(inputs.ids), WARM_FROM, processes):
        # they start while the catalog is read and candidates are found (~0.3 s here)
        worker_procs.warm(workers, background=True)
    with worker_procs.one_blas_thread():
        return (
            yield from session.compute_scan(
                inputs,
                None,
                verify=verify,
                cancel=cancel,
                workers=workers,
                started=t0,
                processes=processes,
            )
        )


def library_counts(data_dir: str | os.PathLike) -> dict[str, int]:
    """{'ok', 'failed', 'signed'} image counts of a data directory's catalog."""
    cat = Catalog(Path(data_dir) / CATALOG_NAME)
    try:
        return {"ok": 0, "failed": 0, SIGNED: 0} | cat.counts()
    finally:
        cat.close()

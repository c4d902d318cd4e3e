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
it did; the writer lock is held from start to end, as for `index`. Unchanged files (same size
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
from pathlib import Path

import numpy as np

from imgfinder.core import decode, jpegfast, scan
from imgfinder.core.catalog import SIGNED, Catalog, recover_catalog, restore_missing_catalog
from imgfinder.core.dupes import signature, store
from imgfinder.core.types import IndexSummary, Progress
from imgfinder.errors import CatalogDamagedError, DecodeError
from imgfinder.lock import WriterLock

log = logging.getLogger(__name__)

BATCH = 256
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
) -> Generator[Progress, None, IndexSummary]:
    """Catalog every new or changed photo with its hash and duplicate signature (no CNN).

    `summary.indexed` counts the files read this run. Holds the writer lock throughout
    (LibraryBusyError if another process is indexing)."""
    t0 = time.perf_counter()
    data = Path(data_dir).resolve()
    lock = WriterLock(data)
    catalog = open_catalog(data, lock)
    lock.acquire("indexing duplicate signatures", timeout=2.0)
    try:
        summary = yield from _index_locked(catalog, add_paths, cancel or threading.Event(), workers)
    finally:
        lock.release()
        catalog.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _index_locked(catalog, add_paths, cancel, workers) -> Generator[Progress, None, IndexSummary]:
    summary = IndexSummary()
    for p in add_paths:
        add_root(catalog, p)
    store.ensure_tables(catalog)
    with ThreadPoolExecutor(workers or _workers(), thread_name_prefix="sigindex") as pool:
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
            # the next batch is read and signed while this one is written (no idle workers)
            ahead = [pool.submit(sign_file, p) for p in batches[0]] if batches else []
            done = 0
            try:
                for k, batch in enumerate(batches):
                    got = [f.result() for f in ahead]
                    more = k + 1 < len(batches) and not cancel.is_set()
                    ahead = [pool.submit(sign_file, p) for p in batches[k + 1]] if more else []
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
                for f in ahead:  # closed or failed mid-run: drop what was not started
                    f.cancel()
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


def scan_signatures(
    catalog: Catalog,
    data_dir: str | os.PathLike,
    *,
    verify: bool = True,
    cancel: threading.Event | None = None,
    workers: int | None = None,
):
    """Candidate pairs of every catalogued photo from hashes and signatures alone (no CNN,
    no torch): the exact and same-photo tiers; `similar` stays NaN. Same generator contract
    and pair cache as session.scan."""
    from imgfinder.core.dupes import session  # noqa: PLC0415 (session imports this module)

    t0 = time.perf_counter()
    inputs = session.scan_inputs(catalog, Path(data_dir), "", verify=verify, features=False)
    cached = session.cached_scan(inputs)
    if cached is not None:
        cached.seconds = time.perf_counter() - t0
        return cached
    return (
        yield from session.compute_scan(
            inputs, None, verify=verify, cancel=cancel, workers=workers, started=t0
        )
    )


def library_counts(data_dir: str | os.PathLike) -> dict[str, int]:
    """{'ok', 'failed', 'signed'} image counts of a data directory's catalog."""
    cat = Catalog(Path(data_dir) / CATALOG_NAME)
    try:
        return {"ok": 0, "failed": 0, SIGNED: 0} | cat.counts()
    finally:
        cat.close()

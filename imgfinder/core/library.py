"""The library: catalog + vector store + model + index behind one object.

The CLI and the GUI both drive this. `index()` is a generator that yields one
Progress per batch and checks the cancel flag between batches; it returns an
IndexSummary. Search goes through the configured index backend, which re-ranks
against the memory-mapped vector store (no second copy of the vectors).

Robustness rules (see also catalog.py, vectors.py and lock.py):
- one writer per data directory: `index`, folder changes and the vector-store repairs run
  under the writer lock (`imgfinder.lock`); a second writer gets "indexing in progress in
  process N";
- readers (search, status) never write: no index re-save, no trimming of a store a live
  writer may be appending to; a stale index is brought up to date in memory only;
- a damaged, short or missing vector file is detected (rows past its end, rows whose
  checksum fails); such rows are left out of results, `status` counts them, and the next
  `index` re-extracts only those images;
- a damaged catalog is moved aside and rebuilt (`catalog.recover_catalog`); `recovery`
  says what happened;
- temp files of interrupted saves whose writer is gone are removed at open.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgfinder import paths
from imgfinder.core import decode, photometa, scan
from imgfinder.core.catalog import (
    Catalog,
    Recovery,
    recover_catalog,
    restore_missing_catalog,
)
from imgfinder.core.centring import MIN_VECTORS as MIN_CENTRE_VECTORS
from imgfinder.core.centring import Centre, estimate, load_centre, save_centre
from imgfinder.core.dupes import rawpairs
from imgfinder.core.dupes import store as dupe_store
from imgfinder.core.extract import Extractor, ModelConfig, device_description
from imgfinder.core.index import BACKENDS, open_index
from imgfinder.core.modelspec import describe_model_id
from imgfinder.core.types import Hit, IndexSummary, Progress
from imgfinder.core.vectors import VERSION as VECTORS_VERSION
from imgfinder.core.vectors import VectorStore, model_digest
from imgfinder.core.weights import ProgressFn
from imgfinder.errors import (
    CatalogDamagedError,
    DecodeError,
    ImgfinderError,
    IndexFormatError,
    ModelMismatchError,
)
from imgfinder.lock import WriterLock, pid_alive

log = logging.getLogger(__name__)

COMPACT_MIN_DEAD = 1000  # rewrite the vector store when this many rows are dead ...
COMPACT_DEAD_FRACTION = 0.3  # ... and they are this share of the file


@dataclass
class RootInfo:
    id: int
    path: str
    available: bool
    ok: int
    failed: int


class CatalogSource:
    """Image id -> vector, for the index's exact re-rank (the index keeps no copy).

    With a `centre`, vectors come out in the index's centred space (centring.py); the
    store keeps them raw."""

    def __init__(
        self,
        store: VectorStore,
        pairs: Iterable[tuple[int, int]] = (),
        centre: Centre | None = None,
    ):
        self.store = store
        self.rows: dict[int, int] = dict(pairs)
        self.centre = centre

    def raw(self, ids: np.ndarray) -> np.ndarray:
        rows = [self.rows[int(i)] for i in np.asarray(ids).ravel()]
        return self.store.get(np.asarray(rows, dtype=np.int64))

    def get(self, ids: np.ndarray) -> np.ndarray:
        vecs = self.raw(ids)
        return vecs if self.centre is None else self.centre.apply(vecs)


class Library:
    """One data directory's photo library."""

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        config: ModelConfig | None = None,
        *,
        index_backend: str = "lsh",
        allow_download: bool = True,
        weights_progress: ProgressFn | None = None,
        centre: bool = True,
    ):
        if index_backend not in BACKENDS:
            raise ImgfinderError(
                f"unknown index backend {index_backend!r}; choose one of {', '.join(BACKENDS)}"
            )
        self.data_dir = Path(data_dir).resolve() if data_dir else paths.data_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = config or ModelConfig()
        self.index_backend = index_backend
        self.allow_download = allow_download
        self.weights_progress = weights_progress
        self.centring = centre  # search in centred space (off with a whitening, which centres)
        self.writer_lock = WriterLock(self.data_dir)
        self.recovery: Recovery | None = None  # set when the catalog had to be recovered
        self.catalog = self._open_catalog()
        self._data_version = self.catalog.data_version()
        remove_stale_temp_files(self.data_dir)
        self._extractor: Extractor | None = None
        self._whitening = None
        self._store: VectorStore | None = None
        self._index = None
        self._source: CatalogSource | None = None
        self._lock = threading.RLock()  # index + store state shared by search and indexing
        self._model_lock = threading.Lock()
        self._rows_verified: str | None = None  # store file whose rows were all checked

    def _open_catalog(self) -> Catalog:
        """The catalog, recovered first if it is damaged (under the writer lock)."""
        path = self.data_dir / "catalog.sqlite"
        try:
            catalog = Catalog(path)
        except CatalogDamagedError:
            with self.writer_lock.hold("recovering the catalog", timeout=30):
                try:  # another process may have recovered it while we waited
                    return Catalog(path)
                except CatalogDamagedError as exc:
                    self.recovery = recover_catalog(path, exc.reason)
            return Catalog(path)
        if catalog.backup_path.exists() and not catalog.roots():  # deleted, or left empty
            with self.writer_lock.hold("restoring the catalog", timeout=30):
                self.recovery = restore_missing_catalog(catalog)
        return catalog

    def changed_elsewhere(self) -> bool:
        """True (once) when another connection or process committed to the catalog since the
        last call: new folders, new or removed photos. The in-memory index is dropped then,
        so the next search sees the new rows. Cheap (`PRAGMA data_version`): poll it."""
        version = self.catalog.data_version()
        if version == self._data_version:
            return False
        self._data_version = version
        with self._lock:
            if not self.writer_lock.held:  # our own indexing keeps its live index
                self._index, self._source = None, None
                if self._store is not None:
                    self._store.close()
                    self._store = None
        return True

    # -- model ---------------------------------------------------------------------
    @property
    def extractor(self) -> Extractor:
        """The model, loaded on first use (once, even when two threads ask at the same time)."""
        if self._extractor is None:
            with self._model_lock:
                if self._extractor is None:
                    self._extractor = Extractor(
                        self.config,
                        allow_download=self.allow_download,
                        progress=self.weights_progress,
                    )
        return self._extractor

    @property
    def whitening(self):
        """The PCA whitening applied to descriptors before storing/searching, or None."""
        if self._whitening is None and self.config.whitening:
            from imgfinder.core.whiten import load_whitening

            self._whitening = load_whitening(
                self.config.whitening, model_id=self.extractor.model_id
            )
        return self._whitening

    @property
    def model_id(self) -> str:
        """Identity of the stored vectors: the model's, plus the whitening when one is used."""
        w = self.whitening
        return w.output_model_id if w is not None else self.extractor.model_id

    @property
    def dim(self) -> int:
        w = self.whitening
        return w.dim_out if w is not None else self.extractor.dim

    def descriptor(self, vectors: np.ndarray) -> np.ndarray:
        """Model descriptors -> the vectors the store and index hold (whitened if configured)."""
        w = self.whitening
        return w.apply(vectors).astype(np.float32) if w is not None else vectors

    def embed(self, source) -> np.ndarray:
        """The stored/searched vector of one image (path, bytes or PIL image)."""
        return self.descriptor(self._embed_query(source)[None])[0]

    def raw_vectors(self) -> np.ndarray:
        """(N, D) as stored (float16): the model's own (unwhitened) vectors of the photos.

        A whitening is learned from these. They exist for photos indexed without whitening,
        also while one is configured but the library has not been re-indexed with it.
        """
        raw_id = self.extractor.model_id
        dim = self.extractor.dim
        with self._lock:  # row numbers stay valid: no compaction in between
            rows = sorted({r for _, r in self.catalog.vector_rows(raw_id)})
            if not rows:
                return np.zeros((0, dim), np.float16)
            rows = np.asarray(rows, dtype=np.int64)
            if not self.config.whitening:
                return self.store().get(rows)
            name = self.catalog.get_meta(f"vectors:{raw_id}")
            store = VectorStore(self.vectors_dir / name, dim, raw_id, writable=False)
            try:
                return store.get(rows)
            finally:
                store.close()

    # -- storage -------------------------------------------------------------------
    @property
    def vectors_dir(self) -> Path:
        d = self.data_dir / "vectors"
        d.mkdir(exist_ok=True)
        return d

    @property
    def index_path(self) -> Path:
        d = self.data_dir / "index"
        d.mkdir(exist_ok=True)
        return d / f"{self.index_backend}.idx"

    def _store_name(self, *, create: bool) -> str:
        key = f"vectors:{self.model_id}"
        name = self.catalog.get_meta(key)
        if name is None:
            name = f"{model_digest(self.model_id).hex()[:20]}-0.f16"
            if create:
                self.catalog.set_meta(key, name)
        return name

    def store(self) -> VectorStore:
        """The vector store of the current model: writable while this process holds the
        writer lock, read-only (never changed on disk) otherwise."""
        if self._store is None:
            if self.writer_lock.held:
                self._prepare_store()
            else:
                path = self.vectors_dir / self._store_name(create=False)
                try:
                    self._store = VectorStore(path, self.dim, self.model_id, writable=False)
                except IndexFormatError as exc:
                    log.warning("%s; its images are re-extracted by the next index", exc)
                    self._store = VectorStore(
                        path.with_name(path.name + ".unreadable"),
                        self.dim,
                        self.model_id,
                        writable=False,
                    )
                    self._store.problem = str(exc)
        return self._store

    def _prepare_store(self) -> int:
        """Under the writer lock: open the store for writing, replacing an unreadable file,
        migrating a version-1 file to checksummed rows, and marking the images whose rows
        are missing or damaged for re-extraction. Returns how many were marked."""
        with self._lock:
            if self._store is not None:
                self._store.close()
            key = f"vectors:{self.model_id}"
            path = self.vectors_dir / self._store_name(create=True)
            try:
                store = VectorStore(path, self.dim, self.model_id)
            except IndexFormatError as exc:
                log.warning("%s: replacing it; its images will be re-extracted", exc)
                path.unlink(missing_ok=True)
                store = VectorStore(path, self.dim, self.model_id)
            if store.version < VECTORS_VERSION:
                store = self._migrate_store(store, key)
            self._store = store
            if self._source is not None:
                self._source.store = store
            self._remove_orphan_stores()
            return self._mark_damaged_rows(store)

    def _migrate_store(self, store: VectorStore, key: str) -> VectorStore:
        """Rewrite a version-1 store (no checksums) as version 2, same row numbers."""
        old_name = store.path.name
        stem, _, gen = Path(old_name).stem.rpartition("-")
        new_name = f"{stem}-{int(gen) + 1}.f16"
        new_store = store.compact_to(self.vectors_dir / new_name, np.arange(len(store)))
        self.catalog.set_meta(key, new_name)
        store.close()
        (self.vectors_dir / old_name).unlink(missing_ok=True)
        log.info("vector store %s migrated to checksummed rows (%s)", old_name, new_name)
        return new_store

    def _mark_damaged_rows(self, store: VectorStore) -> int:
        """Images whose vector row is past the end of the file or fails its checksum lose the
        row (model_id and vec_row cleared, mtime forgotten), so this run re-extracts them and
        no later append can be mistaken for their vector."""
        pairs = self.catalog.vector_rows(self.model_id)
        if not pairs:
            return 0
        rows = np.asarray([r for _, r in pairs], dtype=np.int64)
        if self._rows_verified == store.path.name:
            # checksums were verified by this object's first run (an app re-indexing on every
            # file change must not re-read the whole store each time); the length is cheap
            bad = set(rows[rows >= len(store)].tolist()) | store.bad_rows
        else:
            bad = set(store.verify(rows).tolist())
            self._rows_verified = store.path.name
        ids = [i for i, r in pairs if r in bad]
        if not ids:
            return 0
        with self.catalog.transaction() as c:
            c.executemany(
                "UPDATE images SET vec_row=NULL, model_id=NULL, mtime_ns=-1 WHERE id=?",
                [(i,) for i in ids],
            )
        log.warning("%d images have missing or damaged vectors; re-extracting them", len(ids))
        if self._index is not None:
            live = [i for i in ids if self._source is not None and i in self._source.rows]
            if live:
                self._index.remove(np.asarray(live, dtype=np.int64))
            self._forget_rows(ids)
        store.bad_rows.clear()
        return len(ids)

    def _remove_orphan_stores(self) -> None:
        """Delete vector files no catalog entry names (left by a crash during compaction)."""
        named = {
            v for (v,) in self.catalog.execute("SELECT value FROM meta WHERE key LIKE 'vectors:%'")
        }
        for f in self.vectors_dir.glob("*.f16"):
            if f.name not in named:
                log.info("removing orphaned vector file %s", f)
                f.unlink(missing_ok=True)

    # -- roots ---------------------------------------------------------------------
    def add_root(self, path: str | os.PathLike) -> str:
        with self.writer_lock.hold("changing the library folders", timeout=5):
            sp = self._add_root(path)
        self.catalog.write_backup()
        return sp

    def _add_root(self, path: str | os.PathLike) -> str:
        p = Path(path).expanduser().resolve()
        if not p.exists():
            raise ImgfinderError(f"no such folder: {p}")
        if not p.is_dir():
            raise ImgfinderError(f"not a folder: {p}")
        sp = str(p)
        for _, existing in self.catalog.roots():
            if sp == existing:
                return sp
            if Path(sp).is_relative_to(existing):
                raise ImgfinderError(f"{sp} is already inside the library folder {existing}")
        new_id = self.catalog.add_root(sp)
        # a new parent absorbs roots below it, keeping their images (and vectors)
        with self.catalog.transaction() as c:
            for rid, existing in self.catalog.roots():
                if rid != new_id and Path(existing).is_relative_to(sp):
                    c.execute("UPDATE images SET root_id=? WHERE root_id=?", (new_id, rid))
                    c.execute("DELETE FROM roots WHERE id=?", (rid,))
        return sp

    def remove_root(self, path: str | os.PathLike) -> int:
        with self.writer_lock.hold("changing the library folders", timeout=5):
            return self._remove_root(path)

    def _remove_root(self, path: str | os.PathLike) -> int:
        sp = str(Path(path).expanduser().resolve())
        known = {p for _, p in self.catalog.roots()}
        if sp not in known and str(path) in known:
            sp = str(path)
        if sp not in known:
            raise ImgfinderError(f"{path} is not a library folder")
        ids = self.catalog.remove_root(sp)
        with self._lock:
            if self._index is not None and ids:
                self._index.remove(np.asarray(ids, dtype=np.int64))
                self._forget_rows(ids)
                self._save_index()
        return len(ids)

    def roots(self) -> list[RootInfo]:
        counts = self.catalog.root_counts()
        return [
            RootInfo(rid, p, scan.root_available(p), *counts.get(rid, (0, 0)))
            for rid, p in self.catalog.roots()
        ]

    # -- indexing ------------------------------------------------------------------
    def index(
        self,
        add_paths: Iterable[str | os.PathLike] = (),
        *,
        cancel: threading.Event | None = None,
        only: Iterable[str | os.PathLike] | None = None,
    ) -> Generator[Progress, None, IndexSummary]:
        """Bring the catalog, vectors and index up to date with the roots' files.

        `only` limits the scan to the library folders containing those paths (e.g. the
        folder a file-system watcher reported), instead of every folder. Holds the writer
        lock from the first step to the end (LibraryBusyError if another process has it).
        """
        self.writer_lock.acquire("indexing", timeout=2.0)  # a folder change may be finishing
        try:
            return (yield from self._index_locked(add_paths, cancel=cancel, only=only))
        finally:
            self.writer_lock.release()

    def _index_locked(self, add_paths, *, cancel, only) -> Generator[Progress, None, IndexSummary]:
        t0 = time.perf_counter()
        summary = IndexSummary()
        for p in add_paths:
            self.add_root(p)
        cancel = cancel or threading.Event()
        model_id = self.model_id
        summary.repaired = self._prepare_store()
        store = self.store()
        index = self.load_index()
        hash_rows = self.catalog.hash_rows(model_id)
        dupe_store.ensure_tables(self.catalog)
        roots = self.roots()
        if only is not None:
            wanted = [Path(p).expanduser().resolve() for p in only]
            roots = [r for r in roots if any(w.is_relative_to(r.path) for w in wanted)]
        for root in roots:
            if cancel.is_set():
                break
            if not root.available:
                log.warning("library folder %s is not available; keeping its entries", root.path)
                summary.missing_roots.append(root.path)
                continue
            yield Progress("scan", 0, None, message=f"scanning {root.path}")
            existing = self.catalog.images_under(root.id)
            found: list[str] = []
            todo: list[str] = []
            for f in scan.iter_image_files([root.path], cancel=cancel):
                sf = str(f)
                found.append(sf)
                row = existing.get(sf)
                try:
                    st = f.stat()
                except OSError:
                    todo.append(sf)
                    continue
                fresh = (
                    row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns
                )
                if fresh and (row.status == "failed" or row.model_id == model_id):
                    summary.unchanged += 1
                else:
                    todo.append(sf)
                if len(found) % 2000 == 0:
                    yield Progress("scan", len(found), None, message=root.path)
            if cancel.is_set():
                break
            gone = set(existing) - set(found)
            gone_hashes = {existing[g].hash for g in gone if existing[g].status == "ok"}
            done = 0
            started = time.perf_counter()
            pipeline = self.extractor.pipeline(
                todo, known_hashes=hash_rows.__contains__, cancel=cancel
            )
            for batch in pipeline:
                new_vecs = [b.vector for b in batch if b.vector is not None]
                rows = (
                    store.append(self.descriptor(np.stack(new_vecs)))
                    if new_vecs
                    else np.zeros(0, np.int64)
                )
                row_iter = iter(rows.tolist())
                records = []
                for b in batch:
                    if b.error is not None:
                        summary.skipped[b.path] = b.error
                        records.append((b, "failed", None))
                        continue
                    if b.known:
                        vec_row = hash_rows[b.hash]
                        if b.hash in gone_hashes:
                            summary.moved += 1
                    else:
                        vec_row = next(row_iter)
                        hash_rows[b.hash] = vec_row
                    summary.indexed += 1
                    records.append((b, "ok", vec_row))
                ids = self._write_records(root.id, model_id, records)
                # the duplicate finder's signatures, from the decode just done (keyed by hash)
                dupe_store.save_signatures(
                    self.catalog, {b.hash: b.signature for b in batch if b.signature is not None}
                )
                self._index_add(index, ids, records)
                done += len(batch)
                yield Progress.since(
                    "extract", done, len(todo), started, root.path, already=len(found) - len(todo)
                )
                if cancel.is_set():
                    break
            if cancel.is_set():
                break
            if gone:
                summary.removed += self._delete_paths(sorted(gone))
            yield from self._read_missing_photo_meta(root.id, cancel)
        summary.cancelled = cancel.is_set()
        with self._lock:
            self._recentre_if_stale()
            self._save_index()
        self._maybe_compact()
        summary.seconds = time.perf_counter() - t0
        return summary

    def _write_records(self, root_id: int, model_id: str, records: list) -> list[int | None]:
        now = time.time()
        ids: list[int | None] = []
        with self.catalog.transaction() as c:
            for b, status, vec_row in records:
                c.execute(
                    """INSERT INTO images (path, root_id, size, mtime_ns, hash, width, height,
                           status, error, vec_row, model_id, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(path) DO UPDATE SET root_id=excluded.root_id,
                           size=excluded.size, mtime_ns=excluded.mtime_ns, hash=excluded.hash,
                           width=COALESCE(excluded.width, images.width),
                           height=COALESCE(excluded.height, images.height),
                           status=excluded.status, error=excluded.error,
                           vec_row=excluded.vec_row, model_id=excluded.model_id,
                           updated_at=excluded.updated_at""",
                    (
                        b.path,
                        root_id,
                        b.size,
                        b.mtime_ns,
                        b.hash or None,
                        b.width or None,
                        b.height or None,
                        status,
                        b.error,
                        vec_row,
                        model_id if status == "ok" else None,
                        now,
                    ),
                )
                (image_id,) = c.execute("SELECT id FROM images WHERE path=?", (b.path,)).fetchone()
                ids.append(int(image_id) if status == "ok" else None)
                if status == "ok":
                    self._write_photo_meta(c, int(image_id), b)
        return ids

    @staticmethod
    def _write_photo_meta(c, image_id: int, b) -> None:
        """EXIF facts and decode source of one indexed photo (core/photometa.py columns)."""
        if b.known:  # not decoded again: same bytes, same EXIF as the twin already catalogued
            photometa.copy_from_same_content(c, image_id, b.hash)
        else:
            photometa.store(c, image_id, getattr(b, "meta", None), getattr(b, "source", None))

    def _read_missing_photo_meta(
        self, root_id: int, cancel: threading.Event
    ) -> Generator[Progress, None, None]:
        """Fill in the metadata of photos indexed before it was recorded (EXIF headers only)."""
        todo = photometa.unread(self.catalog, root_id)
        started = time.perf_counter()
        for lo in range(0, len(todo), 256):
            if cancel.is_set():
                return
            chunk = todo[lo : lo + 256]
            got = [(i, decode.read_meta(p)) for i, p in chunk]
            with self.catalog.transaction() as c:
                for i, meta in got:
                    photometa.store(c, i, meta, None)
            yield Progress.since(
                "metadata", lo + len(chunk), len(todo), started, "reading photo metadata"
            )

    def photo_meta(self, image_ids: Iterable[int]) -> dict[int, photometa.PhotoMeta]:
        """image id -> capture date, camera, lens, exposure, GPS (for results' details/sorting)."""
        return photometa.load(self.catalog, image_ids)

    def _index_add(self, index, ids: list[int | None], records: list) -> None:
        pairs = [(i, r[2]) for i, r in zip(ids, records) if i is not None]
        failed = [self.catalog.image_by_path(r[0].path) for i, r in zip(ids, records) if i is None]
        with self._lock:
            stale = [row.id for row in failed if row is not None and row.id in self._source.rows]
            if stale:  # a file that became unreadable leaves the index
                index.remove(np.asarray(stale, dtype=np.int64))
                self._forget_rows(stale)
            if not pairs:
                return
            id_arr = np.asarray([p[0] for p in pairs], dtype=np.int64)
            row_arr = np.asarray([p[1] for p in pairs], dtype=np.int64)
            self._source.rows.update(zip(id_arr.tolist(), row_arr.tolist()))
            id_arr, vecs = self._checked_vectors(id_arr)
            if len(id_arr):
                index.add(id_arr, vecs)

    def _forget_rows(self, ids: Iterable[int]) -> None:
        if self._source is not None:
            for i in ids:
                self._source.rows.pop(int(i), None)

    def _delete_paths(self, gone: list[str]) -> int:
        ids = []
        with self.catalog.transaction() as c:
            for p in gone:
                row = c.execute("SELECT id FROM images WHERE path=?", (p,)).fetchone()
                if row:
                    ids.append(int(row[0]))
                    c.execute("DELETE FROM images WHERE id=?", (row[0],))
        with self._lock:
            live = [i for i in ids if self._source is not None and i in self._source.rows]
            if live and self._index is not None:
                self._index.remove(np.asarray(live, dtype=np.int64))
            self._forget_rows(ids)
        return len(ids)

    def _maybe_compact(self) -> None:
        store = self.store()
        used = sorted({r for _, r in self.catalog.vector_rows(self.model_id)})
        dead = len(store) - len(used)
        if dead < COMPACT_MIN_DEAD or dead < COMPACT_DEAD_FRACTION * len(store):
            return
        self.compact()

    def compact(self) -> None:
        """Drop vector rows no image uses; crash-safe (see VectorStore.compact_to)."""
        with self._lock:
            store = self.store()
            key = f"vectors:{self.model_id}"
            old_name = self.catalog.get_meta(key)
            stem, _, gen = Path(old_name).stem.rpartition("-")
            new_name = f"{stem}-{int(gen) + 1}.f16"
            used = sorted({r for _, r in self.catalog.vector_rows(self.model_id)})
            new_store = store.compact_to(self.vectors_dir / new_name, np.asarray(used))
            mapping = {old: new for new, old in enumerate(used)}
            with self.catalog.transaction() as c:
                for old, new in mapping.items():
                    c.execute(
                        "UPDATE images SET vec_row=? WHERE vec_row=? AND model_id=?",
                        (-1 - new, old, self.model_id),
                    )
                c.execute(
                    "UPDATE images SET vec_row=-1-vec_row WHERE vec_row<0 AND model_id=?",
                    (self.model_id,),
                )
                c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, new_name))
            old_rows = len(store)
            store.close()
            (self.vectors_dir / old_name).unlink(missing_ok=True)
            log.info("compacted vectors: %d -> %d rows", old_rows, len(used))
            self._store = new_store
            if self._source is not None:
                self._source.store = new_store
                self._source.rows = dict(self.catalog.vector_rows(self.model_id))

    # -- index ---------------------------------------------------------------------
    def load_index(self):
        """The search index, loaded from disk, reconciled with the catalog, or rebuilt."""
        with self._lock:
            if self._index is not None:
                return self._index
            store = self.store()
            pairs = self.catalog.vector_rows(self.model_id)
            n = len(store)
            pairs = [(i, r) for i, r in pairs if r < n and r not in store.bad_rows]
            self._source = CatalogSource(store, pairs)
            self._source.centre = self._centre_for(pairs)
            cls = BACKENDS[self.index_backend]
            index = None
            if self.index_path.exists():
                try:
                    index = cls.load(
                        self.index_path, model_id=self.index_model_id, source=self._source
                    )
                except (IndexFormatError, ModelMismatchError) as exc:
                    log.warning(
                        "index %s unusable (%s); rebuilding from the catalog", self.index_path, exc
                    )
            if index is not None:
                index = self._reconcile(index, pairs)
            if index is None:
                index = self._build_index(pairs)
                self._index = index
                self._drop_bad_rows()
                self._save_index()
            self._index = index
            return index

    def _drop_bad_rows(self) -> None:
        """Leave images whose vector row failed its check out of the in-memory index."""
        store = self._store
        if store is None or not store.bad_rows or self._source is None:
            return
        ids = [i for i, r in self._source.rows.items() if r in store.bad_rows]
        if ids and self._index is not None:
            self._index.remove(np.asarray(ids, dtype=np.int64))
            self._forget_rows(ids)

    def _reconcile(self, index, pairs: list[tuple[int, int]]):
        """Bring a loaded index in line with the catalog (e.g. after a killed run)."""
        have = set(np.asarray(index.ids()).tolist())
        want = {i for i, _ in pairs}
        extra, missing = have - want, want - have
        if not extra and not missing:
            return index
        log.info("index out of date (+%d/-%d); updating", len(missing), len(extra))
        if self.index_backend == "annoy" or len(missing) + len(extra) > 0.5 * max(1, len(want)):
            return None  # cheaper to rebuild
        if extra:
            index.remove(np.asarray(sorted(extra), dtype=np.int64))
        if missing:
            ids, vecs = self._checked_vectors(np.asarray(sorted(missing), dtype=np.int64))
            if len(ids):
                index.add(ids, vecs)
        index.build()
        self._index = index
        self._save_index()
        return index

    # -- centred search space ------------------------------------------------------
    @property
    def centre_path(self) -> Path:
        return self.index_path.parent / "centre.npz"

    @property
    def index_model_id(self) -> str:
        """The id the index file carries: the vectors' model id, plus the mean it centres on."""
        centre = self._source.centre if self._source is not None else None
        return self.model_id if centre is None else f"{self.model_id}/{centre.tag}"

    def _centre_for(self, pairs: list[tuple[int, int]]) -> Centre | None:
        """The saved library mean, or a new estimate when there is none or the library has
        doubled or halved since (saved only by a writer; a reader keeps it in memory)."""
        if not self.centring or self.config.whitening:
            return None
        count = len(pairs)
        centre = load_centre(self.centre_path, self.model_id, self.dim)
        if centre is not None and not centre.stale(count):
            return centre
        ids = np.asarray([i for i, _ in pairs], dtype=np.int64)
        centre = estimate(self._source.raw, ids, self.model_id)
        if centre is not None and self.writer_lock.held:
            save_centre(centre, self.centre_path)
            log.info("library mean estimated from %d vectors (%s)", count, centre.tag)
        return centre

    def _recentre_if_stale(self) -> None:
        """After an index run: a library that has doubled (or reached the minimum size) or
        halved gets a new mean, and its index is rebuilt around it."""
        if self._source is None or not self.centring or self.config.whitening:
            return
        count = len(self._source.rows)
        old = self._source.centre
        if (old is None and count < MIN_CENTRE_VECTORS) or (
            old is not None and not old.stale(count)
        ):
            return
        pairs = list(self._source.rows.items())
        self._source.centre = self._centre_for(pairs)
        if self._source.centre is not old:
            self._index = self._build_index(pairs)

    def search_mean(self) -> np.ndarray | None:
        """The library mean the index centres on (None: raw cosine, or not loaded yet)."""
        centre = self._source.centre if self._source is not None else None
        return None if centre is None else centre.mean

    def index_space(self, vectors: np.ndarray) -> np.ndarray:
        """Stored (or query) vectors -> the space the index searches (centred or as is)."""
        centre = self._source.centre if self._source is not None else None
        vecs = np.asarray(vectors, dtype=np.float32)
        return vecs if centre is None else centre.apply(vecs)

    def _build_index(self, pairs: list[tuple[int, int]]):
        index = open_index(
            self.index_backend, self.dim, model_id=self.index_model_id, source=self._source
        )
        ids = np.asarray([i for i, _ in pairs], dtype=np.int64)
        for s in range(0, len(ids), 8192):
            chunk, vecs = self._checked_vectors(ids[s : s + 8192])
            if len(chunk):
                index.add(chunk, vecs)
        index.build()
        return index

    def _checked_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of `ids` from the store, without those whose row failed its check (they
        are forgotten here and re-extracted by the next index run)."""
        vecs = self._source.get(ids).astype(np.float32)
        bad_rows = self._source.store.bad_rows
        if not bad_rows:
            return ids, vecs
        keep = np.asarray([self._source.rows[int(i)] not in bad_rows for i in ids], dtype=bool)
        self._forget_rows(ids[~keep].tolist())
        return ids[keep], vecs[keep]

    def _save_index(self) -> None:
        """Persist the index; only a writer does (search never writes)."""
        if self._index is None or not self.writer_lock.held:
            return
        if getattr(self._index, "needs_rebuild", False) or not self._index.built:
            self._index.build()
        self._index.save(self.index_path)

    # -- search --------------------------------------------------------------------
    def check_model(self) -> None:
        """Raise a clear 're-index needed' error when the library was made by another model."""
        counts = self.catalog.model_counts()
        if counts and self.model_id not in counts:
            other = max(counts, key=counts.get)
            raise ModelMismatchError(
                f"re-index needed: the library was indexed with model {other}, the current model "
                f"is {self.model_id}; run `imgfinder index` to re-extract {sum(counts.values())} "
                "images",
                stored=other,
                current=self.model_id,
            )

    def search(
        self, source, k: int = 20, *, raw_pairs_as_one: bool = False, rerank=None
    ) -> list[Hit]:
        """Similar photos for an image (path, bytes or PIL image), best first. `rerank`:
        core.rerank.RerankOptions (αQE, DBA + αQE, local verification of the top results)."""
        if rerank is not None and rerank.active:
            from imgfinder.core.rerank_search import reranked_search  # noqa: PLC0415

            path = source if isinstance(source, (str, os.PathLike)) else None
            vector = self.embed(source)
            return reranked_search(
                self, vector, k, rerank, query_path=path, raw_pairs_as_one=raw_pairs_as_one
            )
        return self.search_vector(self.embed(source), k, raw_pairs_as_one=raw_pairs_as_one)

    def query_index(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the index for a vector already in its space (index_space)."""
        with self._lock:
            index = self.load_index()
            if len(index) == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            return index.query(np.asarray(vector, np.float32), k)

    def query_space(self, vector: np.ndarray) -> np.ndarray:
        """A query vector (embed) in the space the index searches; loads the index first,
        which settles that space."""
        with self._lock:
            self.load_index()
            return self.index_space(vector)

    def index_vectors(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of these image ids as the index searches them (centred or not)."""
        with self._lock:
            self.load_index()
            return self.index_space(self._source.get(np.asarray(ids, np.int64)))

    def _embed_query(self, source) -> np.ndarray:
        if isinstance(source, (str, os.PathLike)):
            data = read_query_file(source)
            try:
                return self.extractor.embed(data, path_hint=source)
            except DecodeError as exc:
                raise DecodeError(source, exc.reason) from None
        return self.extractor.embed(source)

    def search_vector(
        self, vector: np.ndarray, k: int = 20, *, raw_pairs_as_one: bool = False
    ) -> list[Hit]:
        """`raw_pairs_as_one` shows a RAW+JPEG pair of one shot as one result, the better-scoring
        file of the two (the app's Settings option; `search --raw-pairs one`)."""
        self.check_model()
        want = 2 * k if raw_pairs_as_one else k  # a pair's second file is dropped
        with self._lock:
            index = self.load_index()
            if len(index) == 0:
                return []
            ids, scores = index.query(self.index_space(vector), want)
            if self._store is not None and self._store.bad_rows:  # found damaged while ranking
                self._drop_bad_rows()
                keep = [int(i) in self._source.rows for i in ids]
                ids, scores = ids[keep], scores[keep]
        rows = self.catalog.images(ids.tolist())
        hits = [
            Hit(int(i), rows[int(i)].path, float(s)) for i, s in zip(ids, scores) if int(i) in rows
        ]
        if raw_pairs_as_one:
            hits = rawpairs.collapse_pairs(hits, self.raw_companions([h.image_id for h in hits]))
        return hits[:k]

    # -- RAW+JPEG pairs ----------------------------------------------------------------
    def raw_companions(self, image_ids: Iterable[int]) -> dict[int, int]:
        """image id -> the image id of the other file of its RAW+JPEG pair (rawpairs.py rules:
        same folder and base name, or same capture second and camera)."""
        out: dict[int, int] = {}
        rows = self.catalog.images(image_ids)
        metas = photometa.load(self.catalog, rows)
        for image_id, row in rows.items():
            cands: dict[int, str] = {image_id: row.path}
            folder, name = os.path.split(row.path)
            stem = os.path.splitext(name)[0]
            pattern = re.sub(r"([*?\[])", r"[\1]", os.path.join(folder, stem)) + ".*"
            for i, p in self.catalog.execute(
                "SELECT id, path FROM images WHERE status='ok' AND path GLOB ?", (pattern,)
            ):
                cands[int(i)] = p
            m = metas.get(image_id)
            if m is not None and m.taken:
                second = m.taken[:19]
                for i, p in self.catalog.execute(
                    "SELECT id, path FROM images WHERE status='ok' AND taken >= ? AND taken < ?",
                    (second, second + "~"),
                ):
                    cands[int(i)] = p
            if len(cands) < 2:
                continue
            cand_ids = sorted(cands)
            cand_meta = photometa.load(self.catalog, cand_ids)
            pos = {i: n for n, i in enumerate(cand_ids)}
            a, b = rawpairs.raw_jpeg_pairs(
                [cands[i] for i in cand_ids], {pos[i]: m for i, m in cand_meta.items()}
            )
            me = pos[image_id]
            for x, y in zip(a.tolist(), b.tolist()):
                if me in (x, y):
                    out[image_id] = cand_ids[y if x == me else x]
                    break
        return out

    # -- reporting -----------------------------------------------------------------
    def disk_usage(self) -> dict[str, int]:
        def size(pattern: str) -> int:
            return sum(
                f.stat().st_size
                for f in self.data_dir.glob(pattern)
                if f.is_file() and not f.name.endswith(".tmp")
            )

        return {
            "catalog": size("catalog.sqlite*"),
            "vectors": size("vectors/*.f16"),
            "index": size("index/*"),
        }

    def status(self) -> dict:
        counts = self.catalog.counts()
        model_counts = self.catalog.model_counts()
        usage = self.disk_usage()
        info = {
            "data_dir": str(self.data_dir),
            "roots": [
                {"path": r.path, "available": r.available, "images": r.ok, "failed": r.failed}
                for r in self.roots()
            ],
            "images": counts.get("ok", 0),
            "failed": counts.get("failed", 0),
            "index_backend": self.index_backend,
            "backbone": self.config.spec.name,
            "bytes_on_disk": usage,
            "writer": self.writer_lock.holder(),
        }
        if self.recovery is not None:
            info["recovered"] = self.recovery.message()
        try:
            ex = self.extractor
            info["model_id"] = ex.model_id
            info["model"] = describe_model_id(self.model_id, ex.weights_source)
            info["centred"] = self.centring and not self.config.whitening
            info["device"] = device_description(ex.device)
            info["weights"] = ex.weights_source
            info["stale"] = sum(n for m, n in model_counts.items() if m != ex.model_id)
            info["vectors_damaged"] = self.vector_health()
        except ImgfinderError as exc:
            info["model_id"] = None
            info["model_error"] = str(exc)
        ok = max(1, counts.get("ok", 0))
        info["bytes_per_image"] = sum(usage.values()) // ok if counts.get("ok") else 0
        return info

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
        self.catalog.close()

    def vector_health(self) -> int:
        """Images without a usable vector: rows found missing or damaged (read, never fixed
        here) plus those already marked for re-extraction by an index run."""
        with self._lock:
            store = self.store()
            pairs = self.catalog.vector_rows(self.model_id)
            bad = set(store.verify(np.asarray([r for _, r in pairs], dtype=np.int64)).tolist())
            return sum(1 for _, r in pairs if r in bad) + self.catalog.awaiting_vectors()


# -- helpers -----------------------------------------------------------------------------------
_NOT_REGULAR = "not a regular file (a FIFO, device or socket cannot be a query)"


def read_query_file(path: str | os.PathLike) -> bytes:
    """Read a query image without ever blocking: FIFOs, devices and sockets are refused."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise DecodeError(path, "is a directory") from None
    except PermissionError:
        raise DecodeError(path, "permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket
            raise DecodeError(path, _NOT_REGULAR) from None
        raise DecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        mode = 0
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise DecodeError(path, "is a directory" if stat.S_ISDIR(mode) else _NOT_REGULAR)
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read()
        except OSError as exc:
            raise DecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise DecodeError(path, "file is empty")
    return data


TEMP_MAX_AGE_S = 24 * 3600  # a temp file older than this is garbage whatever its name says
_TEMP_GLOBS = (".*.tmp", "*/.*.tmp", "*/*.annoy.tmp", ".salvage-*")


def _temp_owner(name: str) -> int | None:
    """The writer PID atomic_write puts in its temp names (`.NAME.pPID.XXXX.tmp`)."""
    for part in name.split("."):
        if part.startswith("p") and part[1:].isdigit():
            return int(part[1:])
    return None


def remove_stale_temp_files(data_dir: Path, *, min_age_s: float = 600.0) -> list[Path]:
    """Remove temp files of interrupted saves (index, vectors, models, backup).

    A temp file is removed when the process that wrote it is gone (its PID is in the name)
    or, for one without a PID, when it has not changed for `min_age_s`; a live writer's
    file is never touched. Returns what was removed.
    """
    removed: list[Path] = []
    now = time.time()
    for pattern in _TEMP_GLOBS:
        for f in data_dir.glob(pattern):
            try:
                age = now - f.lstat().st_mtime
            except OSError:
                continue
            pid = _temp_owner(f.name)
            if pid is not None:
                stale = not pid_alive(pid) or age > TEMP_MAX_AGE_S
            else:
                stale = age > min_age_s
            if not stale:
                continue
            with contextlib.suppress(OSError):
                if f.is_dir():
                    import shutil

                    shutil.rmtree(f)
                else:
                    f.unlink()
                removed.append(f)
                log.info("removed temp file of an interrupted save: %s", f)
    return removed


def run(gen: Generator[Progress, None, IndexSummary], on_progress=None) -> IndexSummary:
    """Drive a core generator to the end, passing each Progress to `on_progress`."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(p)

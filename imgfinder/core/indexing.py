"""The indexing pipeline: roots -> scan -> decode -> extract -> store -> index.

`IndexRun` is one `Library.index()` run (the library holds the writer lock around it). Per
library folder:

1. `scan`: list the image files; a file whose size and mtime match its catalog row (and that
   has a vector of the current model, or failed before) is unchanged;
2. `batches`: decode and extract the changed files, decode overlapped with inference
   (`Extractor.pipeline`); a file whose content hash already has a vector (moved, copied) is
   not decoded. The step is a parameter (`batches=`) yielding the same `PreparedFile`
   batches; a mode without the CNN (e.g. decode and duplicate signatures only) passes its own
   and, since its files carry no vector, overrides `store` in a subclass (every step is a
   method, run by `run()` under the writer lock that `Library.index` takes);
3. `store`: new vectors appended to the vector store (fsync'ed before the catalog commits),
   the batch written to the catalog in one transaction, the duplicate signatures saved;
4. `index`: the batch joins the in-memory index (saved once at the end of the run);
5. `finish_root`: files gone from disk leave the catalog and the index; photo metadata of
   files indexed before it was recorded is read from their headers.

Every step yields Progress, and the cancel flag is checked between batches.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgfinder.core import decode, scan
from imgfinder.core.catalog import ImageRow, ImageWrite
from imgfinder.core.dupes import store as dupe_store
from imgfinder.core.types import IndexSummary, Progress

log = logging.getLogger(__name__)

# (paths, known_hashes, cancel) -> batches of prepared files (extract.PreparedFile: vector set for
# decoded files, `known` for content already in the catalog, `error` for failures)
BatchFn = Callable[..., Iterator[list]]


@dataclass
class RootScan:
    """What the scan of one library folder found."""

    existing: dict[str, ImageRow]  # catalog rows under the folder, by path
    found: list[str] = field(default_factory=list)  # every image file on disk
    todo: list[str] = field(default_factory=list)  # new or changed: to decode and extract

    @property
    def gone(self) -> list[str]:
        return sorted(set(self.existing) - set(self.found))


class IndexRun:
    """One index run over `lib`'s folders (see the module docstring for the steps)."""

    def __init__(
        self,
        lib,
        *,
        cancel: threading.Event | None = None,
        batches: BatchFn | None = None,
    ):
        self.lib = lib
        self.catalog = lib.catalog
        self.search = lib.search_state
        self.cancel = cancel or threading.Event()
        self.batches = batches
        self.summary = IndexSummary()
        self.model_id = ""
        self.hash_rows: dict[str, int] = {}  # content hash -> vector row (reuse for moves)

    def run(
        self, only: Iterable[str | os.PathLike] | None = None
    ) -> Generator[Progress, None, IndexSummary]:
        t0 = time.perf_counter()
        lib, summary, cancel = self.lib, self.summary, self.cancel
        self.model_id = lib.model_id
        summary.repaired = self.search.prepare_store()
        self.search.load_index()
        self.hash_rows = self.catalog.hash_rows(self.model_id)
        dupe_store.ensure_tables(self.catalog)
        roots = lib.roots()
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
            found = yield from self.scan(root)
            if cancel.is_set():
                break
            yield from self.extract_and_store(root, found)
            if cancel.is_set():
                break
            yield from self.finish_root(root, found)
        summary.cancelled = cancel.is_set()
        with self.search.lock:
            self.search.recentre_if_stale()
            self.search.save_index()
        self.search.maybe_compact()
        summary.seconds = time.perf_counter() - t0
        return summary

    # -- 1. scan ---------------------------------------------------------------------------
    def scan(self, root) -> Generator[Progress, None, RootScan]:
        yield Progress("scan", 0, None, message=f"scanning {root.path}")
        out = RootScan(self.catalog.images_under(root.id))
        for f in scan.iter_image_files([root.path], cancel=self.cancel):
            sf = str(f)
            out.found.append(sf)
            row = out.existing.get(sf)
            try:
                st = f.stat()
            except OSError:
                out.todo.append(sf)
                continue
            fresh = row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns
            if fresh and (row.status == "failed" or row.model_id == self.model_id):
                self.summary.unchanged += 1
            else:
                out.todo.append(sf)
            if len(out.found) % 2000 == 0:
                yield Progress("scan", len(out.found), None, message=root.path)
        return out

    # -- 2. decode + extract, 3. store, 4. index -------------------------------------------
    def _batches(self, todo: list[str]) -> Iterator[list]:
        if self.batches is not None:
            return self.batches(todo, known_hashes=self.hash_rows.__contains__, cancel=self.cancel)
        return self.lib.extractor.pipeline(
            todo, known_hashes=self.hash_rows.__contains__, cancel=self.cancel
        )

    def extract_and_store(self, root, found: RootScan) -> Generator[Progress, None, None]:
        gone_hashes = {
            found.existing[g].hash for g in found.gone if found.existing[g].status == "ok"
        }
        done = 0
        started = time.perf_counter()
        for batch in self._batches(found.todo):
            pairs, failed_ids = self.store(root.id, batch, gone_hashes)
            self.search.add(pairs, failed_ids)
            done += len(batch)
            yield Progress.since(
                "extract",
                done,
                len(found.todo),
                started,
                root.path,
                already=len(found.found) - len(found.todo),
            )
            if self.cancel.is_set():
                break

    def store(
        self, root_id: int, batch: list, gone_hashes: set[str]
    ) -> tuple[list[tuple[int, int]], list[int]]:
        """Append the batch's new vectors, record every file in the catalog (one transaction)
        and the duplicate signatures; returns (image id, vector row) of the indexed files and
        the ids of files that failed."""
        summary = self.summary
        new_vecs = [b.vector for b in batch if b.vector is not None]
        rows = (
            self.search.open_store().append(self.lib.descriptor(np.stack(new_vecs)))
            if new_vecs
            else np.zeros(0, np.int64)
        )
        row_iter = iter(rows.tolist())
        writes: list[ImageWrite] = []
        for b in batch:
            vec_row = None
            if b.error is not None:
                summary.skipped[b.path] = b.error
            elif b.known:
                vec_row = self.hash_rows[b.hash]
                if b.hash in gone_hashes:
                    summary.moved += 1
            else:
                vec_row = next(row_iter)
                self.hash_rows[b.hash] = vec_row
            if b.error is None:
                summary.indexed += 1
            writes.append(_image_write(b, vec_row))
        ids = self.catalog.write_images(root_id, self.model_id, writes)
        # the duplicate finder's signatures, from the decode just done (keyed by hash)
        dupe_store.save_signatures(
            self.catalog, {b.hash: b.signature for b in batch if b.signature is not None}
        )
        pairs = [(i, w.vec_row) for i, w in zip(ids, writes) if i is not None]
        failed = [self.catalog.image_by_path(w.path) for i, w in zip(ids, writes) if i is None]
        return pairs, [row.id for row in failed if row is not None]

    # -- 5. files gone, metadata not yet read ----------------------------------------------
    def finish_root(self, root, found: RootScan) -> Generator[Progress, None, None]:
        if found.gone:
            self.summary.removed += self.lib.forget_paths(found.gone)
        yield from self.read_missing_photo_meta(root.id)

    def read_missing_photo_meta(self, root_id: int) -> Generator[Progress, None, None]:
        """Fill in the metadata of photos indexed before it was recorded (EXIF headers only)."""
        todo = self.catalog.meta_unread(root_id)
        started = time.perf_counter()
        for lo in range(0, len(todo), 256):
            if self.cancel.is_set():
                return
            chunk = todo[lo : lo + 256]
            self.catalog.store_photo_meta([(i, decode.read_meta(p)) for i, p in chunk])
            yield Progress.since(
                "metadata", lo + len(chunk), len(todo), started, "reading photo metadata"
            )


def _image_write(b, vec_row: int | None) -> ImageWrite:
    """A prepared file (extract.PreparedFile) as the catalog records it."""
    return ImageWrite(
        path=b.path,
        size=b.size,
        mtime_ns=b.mtime_ns,
        hash=b.hash,
        width=b.width,
        height=b.height,
        error=b.error,
        vec_row=vec_row,
        meta=getattr(b, "meta", None),
        decode_source=getattr(b, "source", None),
        same_content=b.known,
    )

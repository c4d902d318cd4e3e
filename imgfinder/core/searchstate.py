"""The library's search side: the current model's vector store, the catalog's image id -> row
map (`CatalogSource`) and the index over them, loaded from disk, reconciled with the catalog
or rebuilt, in the centred search space (centring.py). One RLock guards it all: search and
indexing share it.

Robustness rules (the library's, see library.py): readers never write (no index re-save, no
trimming of a store a live writer may be appending to; a stale index is brought up to date
in memory only); a row past the end of its file or failing its checksum is left out of
results and its image is re-extracted by the next index run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import numpy as np

from imgfinder.core.centring import MIN_VECTORS as MIN_CENTRE_VECTORS
from imgfinder.core.centring import Centre, estimate, load_centre, save_centre
from imgfinder.core.index import BACKENDS, open_index
from imgfinder.core.vectors import VectorFiles, VectorStore
from imgfinder.errors import IndexFormatError, ModelMismatchError

log = logging.getLogger(__name__)


class _RowMap(dict):
    """image id -> vector row, counting its changes (CatalogSource keeps a sorted copy)."""

    version = 0

    def _changed(self) -> None:
        self.version += 1

    def __setitem__(self, key, value) -> None:
        self._changed()
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self._changed()
        super().__delitem__(key)

    def update(self, *args, **kw) -> None:
        self._changed()
        super().update(*args, **kw)

    def pop(self, *args):
        self._changed()
        return super().pop(*args)

    def popitem(self):
        self._changed()
        return super().popitem()

    def setdefault(self, *args):
        self._changed()
        return super().setdefault(*args)

    def clear(self) -> None:
        self._changed()
        super().clear()


class CatalogSource:
    """Image id -> vector, for the index's exact re-rank (the index keeps no copy).

    With a `centre`, vectors come out in the index's centred space (centring.py) but not
    normalised (the index normalises what a source gives, base.py): the store keeps them raw.
    Normalising here too cost a third of a duplicate scan's feature pass.

    The index's re-rank uses the fast form (`take_f16` + `shift`, base.py): the stored float16
    rows gathered into its own cache-sized buffer, widened and shifted there, instead of a
    float32 copy of every block made here (the duplicate scan's feature pass re-ranks ~1.4M
    rows at 100k photos)."""

    def __init__(
        self,
        store: VectorStore,
        pairs: Iterable[tuple[int, int]] = (),
        centre: Centre | None = None,
    ):
        self.store = store
        self.rows = dict(pairs)
        self.centre = centre
        self._sorted: tuple | None = None  # (version, ids, rows) of the map, sorted by id

    @property
    def rows(self) -> dict[int, int]:
        return self._rows

    @rows.setter
    def rows(self, value) -> None:
        self._rows = _RowMap(value)
        self._sorted = None

    @property
    def shift(self) -> np.ndarray | None:
        """What `get` subtracts from a stored row (the centre's mean), or None."""
        return None if self.centre is None else self.centre.mean

    def store_rows(self, ids: np.ndarray) -> np.ndarray:
        """Vector rows (int64) of image ids, vectorised (KeyError for an unknown id)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        cached = self._sorted
        if cached is None or cached[0] != self._rows.version:
            keys = np.fromiter(self._rows.keys(), np.int64, count=len(self._rows))
            vals = np.fromiter(self._rows.values(), np.int64, count=len(self._rows))
            order = np.argsort(keys, kind="stable")
            cached = self._sorted = (self._rows.version, keys[order], vals[order])
        _, keys, vals = cached
        at = np.minimum(np.searchsorted(keys, ids), max(len(keys) - 1, 0))
        if len(ids) and (len(keys) == 0 or not np.array_equal(keys[at], ids)):
            missing = ids[(keys[at] != ids) if len(keys) else slice(None)]
            raise KeyError(int(missing[0]))
        return vals[at]

    def raw(self, ids: np.ndarray) -> np.ndarray:
        return self.store.get(self.store_rows(ids))

    def take_f16(self, ids: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Stored (raw, float16) rows of `ids` into `out` ((len(ids), dim) float16)."""
        return self.store.take(self.store_rows(ids), out)

    def get(self, ids: np.ndarray) -> np.ndarray:
        vecs = self.raw(ids)
        return vecs if self.centre is None else self.centre.offset(vecs)


class SearchState:
    """Owned by one Library (`lib`): reads its model id, dimension, backend, writer lock and
    catalog; holds the store, the id -> row map and the index."""

    def __init__(self, lib):
        self.lib = lib
        self.files = VectorFiles(lib.dirs.vectors, lib.catalog)
        self.lock = threading.RLock()
        self.store: VectorStore | None = None
        self.source: CatalogSource | None = None
        self.index = None
        self._rows_verified: str | None = None  # store file whose rows were all checked

    # -- the vector store ------------------------------------------------------------------
    def open_store(self) -> VectorStore:
        """Writable while this process holds the writer lock, read-only otherwise."""
        if self.store is None:
            if self.lib.writer_lock.held:
                self.prepare_store()
            else:
                self.store = self.files.open_reader(self.lib.model_id, self.lib.dim)
        return self.store

    def prepare_store(self) -> int:
        """Under the writer lock: open the store for writing (see VectorFiles.open_writer)
        and mark the images whose rows are missing or damaged for re-extraction. Returns how
        many were marked."""
        with self.lock:
            if self.store is not None:
                self.store.close()
            store = self.files.open_writer(self.lib.model_id, self.lib.dim)
            self.store = store
            if self.source is not None:
                self.source.store = store
            return self._mark_damaged_rows(store)

    def _mark_damaged_rows(self, store: VectorStore) -> int:
        """Images whose vector row is past the end of the file or fails its checksum lose the
        row (model_id and vec_row cleared, mtime forgotten), so this run re-extracts them and
        no later append can be mistaken for their vector."""
        pairs = self.lib.catalog.vector_rows(self.lib.model_id)
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
        self.lib.catalog.forget_vectors(ids)
        log.warning("%d images have missing or damaged vectors; re-extracting them", len(ids))
        if self.index is not None:
            self.remove(ids)
        store.bad_rows.clear()
        return len(ids)

    def maybe_compact(self) -> None:
        store = self.open_store()
        used = len({r for _, r in self.lib.catalog.vector_rows(self.lib.model_id)})
        if self.files.worth_compacting(store, used):
            self.compact()

    def compact(self) -> None:
        """Drop vector rows no image uses; crash-safe (see VectorFiles.compact)."""
        with self.lock:
            new_store = self.files.compact(self.open_store())
            self.store = new_store
            if self.source is not None:
                self.source.store = new_store
                self.source.rows = dict(self.lib.catalog.vector_rows(self.lib.model_id))

    def drop(self) -> None:
        """Forget the in-memory index and store (another process changed the catalog)."""
        with self.lock:
            self.index, self.source = None, None
            if self.store is not None:
                self.store.close()
                self.store = None

    def close(self) -> None:
        with self.lock:
            if self.store is not None:
                self.store.close()

    # -- the index -------------------------------------------------------------------------
    def load_index(self):
        """The search index, loaded from disk, reconciled with the catalog, or rebuilt."""
        with self.lock:
            if self.index is not None:
                return self.index
            store = self.open_store()
            pairs = self.lib.catalog.vector_rows(self.lib.model_id)
            n = len(store)
            pairs = [(i, r) for i, r in pairs if r < n and r not in store.bad_rows]
            self.source = CatalogSource(store, pairs)
            self.source.centre = self._centre_for(pairs)
            cls = BACKENDS[self.lib.index_backend]
            path = self.lib.index_path
            index = None
            if path.exists():
                try:
                    index = cls.load(path, model_id=self.index_model_id, source=self.source)
                except (IndexFormatError, ModelMismatchError) as exc:
                    log.warning("index %s unusable (%s); rebuilding from the catalog", path, exc)
            if index is not None:
                index = self._reconcile(index, pairs)
            if index is None:
                index = self._build_index(pairs)
                self.index = index
                self.drop_bad_rows()
                self.save_index()
            self.index = index
            return index

    def drop_bad_rows(self) -> None:
        """Leave images whose vector row failed its check out of the in-memory index."""
        store = self.store
        if store is None or not store.bad_rows or self.source is None:
            return
        ids = [i for i, r in self.source.rows.items() if r in store.bad_rows]
        if ids and self.index is not None:
            self.index.remove(np.asarray(ids, dtype=np.int64))
            self.forget_rows(ids)

    def _reconcile(self, index, pairs: list[tuple[int, int]]):
        """Bring a loaded index in line with the catalog (e.g. after a killed run)."""
        have = set(np.asarray(index.ids()).tolist())
        want = {i for i, _ in pairs}
        extra, missing = have - want, want - have
        if not extra and not missing:
            return index
        log.info("index out of date (+%d/-%d); updating", len(missing), len(extra))
        if self.lib.index_backend == "annoy" or len(missing) + len(extra) > 0.5 * max(1, len(want)):
            return None  # cheaper to rebuild
        if extra:
            index.remove(np.asarray(sorted(extra), dtype=np.int64))
        if missing:
            ids, vecs = self.checked_vectors(np.asarray(sorted(missing), dtype=np.int64))
            if len(ids):
                index.add(ids, vecs)
        index.build()
        self.index = index
        self.save_index()
        return index

    def _build_index(self, pairs: list[tuple[int, int]]):
        index = open_index(
            self.lib.index_backend, self.lib.dim, model_id=self.index_model_id, source=self.source
        )
        ids = np.asarray([i for i, _ in pairs], dtype=np.int64)
        for s in range(0, len(ids), 8192):
            chunk, vecs = self.checked_vectors(ids[s : s + 8192])
            if len(chunk):
                index.add(chunk, vecs)
        index.build()
        return index

    def checked_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of `ids` from the store, without those whose row failed its check (they
        are forgotten here and re-extracted by the next index run)."""
        vecs = self.source.get(ids).astype(np.float32)
        bad_rows = self.source.store.bad_rows
        if not bad_rows:
            return ids, vecs
        keep = np.asarray([self.source.rows[int(i)] not in bad_rows for i in ids], dtype=bool)
        self.forget_rows(ids[~keep].tolist())
        return ids[keep], vecs[keep]

    def save_index(self) -> None:
        """Persist the index; only a writer does (search never writes)."""
        if self.index is None or not self.lib.writer_lock.held:
            return
        if getattr(self.index, "needs_rebuild", False) or not self.index.built:
            self.index.build()
        self.index.save(self.lib.index_path)

    def add(self, pairs: list[tuple[int, int]], failed_ids: Iterable[int] = ()) -> None:
        """New (image id, vector row) pairs join the index; images that failed this time
        (a file that became unreadable) leave it."""
        with self.lock:
            stale = [i for i in failed_ids if i in self.source.rows]
            if stale:
                self.index.remove(np.asarray(stale, dtype=np.int64))
                self.forget_rows(stale)
            if not pairs:
                return
            id_arr = np.asarray([p[0] for p in pairs], dtype=np.int64)
            row_arr = np.asarray([p[1] for p in pairs], dtype=np.int64)
            self.source.rows.update(zip(id_arr.tolist(), row_arr.tolist()))
            id_arr, vecs = self.checked_vectors(id_arr)
            if len(id_arr):
                self.index.add(id_arr, vecs)

    def remove(self, ids: Iterable[int]) -> None:
        """Images leave the in-memory index (removed from the catalog, or rows damaged)."""
        ids = [int(i) for i in ids]
        with self.lock:
            live = [i for i in ids if self.source is not None and i in self.source.rows]
            if live and self.index is not None:
                self.index.remove(np.asarray(live, dtype=np.int64))
            self.forget_rows(ids)

    def forget_rows(self, ids: Iterable[int]) -> None:
        if self.source is not None:
            for i in ids:
                self.source.rows.pop(int(i), None)

    def query(self, vector: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, scores) of the nearest `want`, without rows found damaged meanwhile."""
        with self.lock:
            index = self.load_index()
            if len(index) == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            ids, scores = index.query(self.index_space(vector), want)
            if self.store is not None and self.store.bad_rows:  # found damaged while ranking
                self.drop_bad_rows()
                keep = [int(i) in self.source.rows for i in ids]
                ids, scores = ids[keep], scores[keep]
            return ids, scores

    # -- centred search space --------------------------------------------------------------
    @property
    def centre(self) -> Centre | None:
        return self.source.centre if self.source is not None else None

    @property
    def index_model_id(self) -> str:
        """The id the index file carries: the vectors' model id, plus the mean it centres on."""
        centre = self.centre
        return self.lib.model_id if centre is None else f"{self.lib.model_id}/{centre.tag}"

    def _centring(self) -> bool:
        return self.lib.centring and not self.lib.config.whitening

    def _centre_for(self, pairs: list[tuple[int, int]]) -> Centre | None:
        """The saved library mean, or a new estimate when there is none or the library has
        doubled or halved since (saved only by a writer; a reader keeps it in memory)."""
        if not self._centring():
            return None
        count = len(pairs)
        lib = self.lib
        centre = load_centre(lib.centre_path, lib.model_id, lib.dim)
        if centre is not None and not centre.stale(count):
            return centre
        ids = np.asarray([i for i, _ in pairs], dtype=np.int64)
        centre = estimate(self.source.raw, ids, lib.model_id)
        if centre is not None and lib.writer_lock.held:
            save_centre(centre, lib.centre_path)
            log.info("library mean estimated from %d vectors (%s)", count, centre.tag)
        return centre

    def recentre_if_stale(self) -> None:
        """After an index run: a library that has doubled (or reached the minimum size) or
        halved gets a new mean, and its index is rebuilt around it."""
        if self.source is None or not self._centring():
            return
        count = len(self.source.rows)
        old = self.source.centre
        if (old is None and count < MIN_CENTRE_VECTORS) or (
            old is not None and not old.stale(count)
        ):
            return
        pairs = list(self.source.rows.items())
        self.source.centre = self._centre_for(pairs)
        if self.source.centre is not old:
            self.index = self._build_index(pairs)

    def index_space(self, vectors: np.ndarray) -> np.ndarray:
        """Stored (or query) vectors -> the space the index searches (centred or as is)."""
        centre = self.centre
        vecs = np.asarray(vectors, dtype=np.float32)
        return vecs if centre is None else centre.apply(vecs)

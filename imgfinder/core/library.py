"""The library: catalog + vector store + model + index behind one object.

A small facade the CLI and the GUI share. The work is in the modules it ties together:
`catalog` (all SQL), `vectors` (the vector files), `indexing` (the `index()` pipeline: scan,
decode, extract, store, index), `searchstate` (the store, id -> row map and index in memory),
`extract` (the model). `index()` is a generator that yields one Progress per batch and checks
the cancel flag between batches; it returns an IndexSummary. Search goes through the
configured index backend, which re-ranks against the memory-mapped vector store (no second
copy of the vectors).

Robustness rules (see also catalog/, vectors.py, searchstate.py and lock.py):
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

import logging
import os
import re
import threading
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgfinder import paths
from imgfinder.core import photometa, scan
from imgfinder.core.catalog import (
    Catalog,
    Recovery,
    recover_catalog,
    restore_missing_catalog,
)
from imgfinder.core.centring import Centre, estimate
from imgfinder.core.dupes import rawpairs
from imgfinder.core.extract import Extractor, ModelConfig, device_description
from imgfinder.core.files import read_query_file, remove_stale_temp_files
from imgfinder.core.index import BACKENDS
from imgfinder.core.indexing import IndexRun
from imgfinder.core.modelspec import describe_model_id
from imgfinder.core.searchstate import CatalogSource, SearchState
from imgfinder.core.types import Hit, IndexSummary, Progress, run  # noqa: F401 (run: re-exported)
from imgfinder.core.vectors import VectorStore
from imgfinder.core.weights import ProgressFn
from imgfinder.errors import (
    CatalogDamagedError,
    DecodeError,
    ImgfinderError,
    ModelMismatchError,
)
from imgfinder.lock import WriterLock

__all__ = [
    "CatalogSource",
    "Library",
    "RootInfo",
    "read_query_file",
    "remove_stale_temp_files",
    "run",
]

log = logging.getLogger(__name__)


@dataclass
class RootInfo:
    id: int
    path: str
    available: bool
    ok: int
    failed: int


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
        # one source of truth for every folder of this library (paths.DataDir): the process's
        # data directory unless another one is given; models follow it too
        self.dirs = paths.DataDir.at(data_dir) if data_dir else paths.current()
        self.data_dir = self.dirs.root
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
        self._model_lock = threading.Lock()
        # the vector store, id -> row map and index in memory (searchstate.py)
        self.search_state = SearchState(self)

    def _open_catalog(self) -> Catalog:
        """The catalog, recovered first if it is damaged (under the writer lock)."""
        path = self.dirs.catalog
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
        if not self.writer_lock.held:  # our own indexing keeps its live index
            self.search_state.drop()
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
                        models_dir=self.dirs.models,
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
        got = self._with_raw_store(lambda store, rows: store.get(rows))
        return np.zeros((0, self.extractor.dim), np.float16) if got is None else got

    def raw_centre(self) -> Centre | None:
        """The mean of those raw vectors, estimated as search's centre is (centring.estimate:
        an even sample, without loading every vector); None below centring.MIN_VECTORS."""
        raw_id = self.extractor.model_id
        return self._with_raw_store(lambda store, rows: estimate(store.get, rows, raw_id))

    def _with_raw_store(self, use):
        """use(store, rows) with the raw (unwhitened) vector store of the model and the rows
        its photos hold, under the search lock (row numbers stay valid: no compaction in
        between); None when no photo has a raw vector."""
        raw_id = self.extractor.model_id
        with self.search_state.lock:
            rows = sorted({r for _, r in self.catalog.vector_rows(raw_id)})
            if not rows:
                return None
            rows = np.asarray(rows, dtype=np.int64)
            if not self.config.whitening:
                return use(self.store(), rows)
            store = self.search_state.files.open_raw(raw_id, self.extractor.dim)
            try:
                return use(store, rows)
            finally:
                store.close()

    # -- storage and index (searchstate.py, vectors.py) ---------------------------------
    @property
    def vectors_dir(self) -> Path:
        return self.dirs.vectors

    @property
    def index_path(self) -> Path:
        return self.dirs.index / f"{self.index_backend}.idx"

    @property
    def centre_path(self) -> Path:
        return self.index_path.parent / "centre.npz"

    def store(self) -> VectorStore:
        """The vector store of the current model: writable while this process holds the
        writer lock, read-only (never changed on disk) otherwise."""
        return self.search_state.open_store()

    def load_index(self):
        """The search index, loaded from disk, reconciled with the catalog, or rebuilt."""
        return self.search_state.load_index()

    def compact(self) -> None:
        """Drop vector rows no image uses; crash-safe (see VectorFiles.compact)."""
        self.search_state.compact()

    @property
    def index_model_id(self) -> str:
        """The id the index file carries: the vectors' model id, plus the mean it centres on."""
        return self.search_state.index_model_id

    def search_mean(self) -> np.ndarray | None:
        """The library mean the index centres on (None: search scores are the raw cosine).
        Loads the index when it is not in memory (never used yet, or dropped because the
        catalog changed), so an explanation decomposes the score search shows, not another."""
        st = self.search_state
        with st.lock:
            if st.source is None:
                st.load_index()
            centre = st.centre
        return None if centre is None else centre.mean

    def index_space(self, vectors: np.ndarray) -> np.ndarray:
        """Stored (or query) vectors -> the space the index searches (centred or as is)."""
        return self.search_state.index_space(vectors)

    # -- roots ---------------------------------------------------------------------
    def add_root(self, path: str | os.PathLike) -> str:
        with self.writer_lock.hold("changing the library folders", timeout=5):
            sp = self._add_root(path)
        self.catalog.write_backup()
        return sp

    def _add_root(self, path: str | os.PathLike) -> str:
        return self.catalog.add_folder(path)

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
        state = self.search_state
        with state.lock:
            if state.index is not None and ids:
                state.remove(ids)
                state.save_index()
        return len(ids)

    def roots(self) -> list[RootInfo]:
        counts = self.catalog.root_counts()
        return [
            RootInfo(rid, p, scan.root_available(p), *counts.get(rid, (0, 0)))
            for rid, p in self.catalog.roots()
        ]

    # -- indexing (indexing.py) ----------------------------------------------------
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
            for p in add_paths:
                self.add_root(p)
            return (yield from IndexRun(self, cancel=cancel).run(only))
        finally:
            self.writer_lock.release()

    def forget_paths(self, paths: Iterable[str]) -> int:
        """Files gone from disk (or moved to the trash) leave the catalog and the index now;
        returns how many were catalogued."""
        ids = self.catalog.delete_paths(paths)
        self.search_state.remove(ids)
        return len(ids)

    def photo_meta(self, image_ids: Iterable[int]) -> dict[int, photometa.PhotoMeta]:
        """image id -> capture date, camera, lens, exposure, GPS (for results' details/sorting)."""
        return self.catalog.photo_meta(image_ids)

    def decode_sources(self, image_ids: Iterable[int]) -> dict[int, str]:
        """image id -> how it was decoded for the model ("full", "raw-preview", ...)."""
        return self.catalog.decode_sources(image_ids)

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
        """(ids, scores) of the index for a vector already in its space (query_space)."""
        st = self.search_state
        with st.lock:
            index = st.load_index()
            if len(index) == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            return index.query(np.asarray(vector, np.float32), k)

    def query_space(self, vector: np.ndarray) -> np.ndarray:
        """A query vector (embed) in the space the index searches; loads the index first,
        which settles that space."""
        st = self.search_state
        with st.lock:
            st.load_index()
            return st.index_space(vector)

    def index_vectors(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of these image ids as the index searches them (centred or not)."""
        st = self.search_state
        with st.lock:
            st.load_index()
            # raw rows, then the index's space once (source.get already centres)
            return st.index_space(st.source.raw(np.asarray(ids, np.int64)))

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
        file of the two (the app's Settings option; `search --raw-pairs one`). Each hit
        carries its catalog row (`Hit.row`), looked up once here."""
        self.check_model()
        want = 2 * k if raw_pairs_as_one else k  # a pair's second file is dropped
        ids, scores = self.search_state.query(vector, want)
        return self.hits(ids, scores, k, raw_pairs_as_one=raw_pairs_as_one)

    def hits(
        self, ids: np.ndarray, scores: np.ndarray, k: int, *, raw_pairs_as_one: bool = False
    ) -> list[Hit]:
        """Ranked (ids, scores) -> the first k Hits, each with its catalog row (ids no longer
        catalogued are dropped); `raw_pairs_as_one` keeps the better file of a RAW+JPEG pair."""
        rows = self.catalog.images(ids.tolist())
        hits = [
            Hit(int(i), rows[int(i)].path, float(s), rows[int(i)])
            for i, s in zip(ids, scores)
            if int(i) in rows
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
        metas = self.catalog.photo_meta(rows)
        for image_id, row in rows.items():
            cands: dict[int, str] = {image_id: row.path}
            folder, name = os.path.split(row.path)
            stem = os.path.splitext(name)[0]
            pattern = re.sub(r"([*?\[])", r"[\1]", os.path.join(folder, stem)) + ".*"
            cands.update(self.catalog.ok_images_glob(pattern))
            m = metas.get(image_id)
            if m is not None and m.taken:
                second = m.taken[:19]
                cands.update(self.catalog.ok_images_taken(second, second + "~"))
            if len(cands) < 2:
                continue
            cand_ids = sorted(cands)
            cand_meta = self.catalog.photo_meta(cand_ids)
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
        self.search_state.close()
        self.catalog.close()

    def vector_health(self) -> int:
        """Images without a usable vector: rows found missing or damaged (read, never fixed
        here) plus those already marked for re-extraction by an index run."""
        with self.search_state.lock:
            store = self.store()
            pairs = self.catalog.vector_rows(self.model_id)
            bad = set(store.verify(np.asarray([r for _, r in pairs], dtype=np.int64)).tolist())
            return sum(1 for _, r in pairs if r in bad) + self.catalog.awaiting_vectors()

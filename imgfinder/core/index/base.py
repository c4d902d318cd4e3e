"""The interface all vector indexes share: ids, validation, vector storage, save/load plumbing.

Vector storage. Every backend re-ranks candidates by exact cosine against float16 unit
vectors, held in one of two ways:

* owned (default): the index keeps the normalised rows itself, in RAM after `add`, inside the
  index file after `save`, and memory-mapped read-only after `load` (so a loaded index costs
  only its small structures in RAM; the OS pages vectors in as queries touch them);
* external `source=`: any object with ``get(ids: np.ndarray) -> (len(ids), dim)`` float16 or
  float32 rows (the app's memory-mapped vector store). `add(ids, vectors)` then uses the
  vectors only to compute the backend's codes and drops them, re-ranking calls
  ``source.get(candidate_ids)`` (rows need not be normalised; scores are cosine regardless),
  `build()` streams all rows from the source, and `save` writes no vector section. Such a file
  must be loaded with a source again. A source may also offer the fast form the LSH re-rank
  uses: ``take_f16(ids, out)`` (stored float16 rows into a (len(ids), dim) buffer) and
  ``shift`` (a float32 vector subtracted from every row, or None): ``get(ids)`` must then
  equal ``take_f16(ids) - shift`` in float32.

Thread safety: concurrent `query` calls are safe (scratch buffers are per thread); mutation
(`add`, `remove`, `build`) must not overlap with anything else.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ...errors import IndexFormatError, IndexStateError
from . import _persist
from ._kernels import F16_SCALE, brute_force_knn, f16_bad_rows, f16_to_f32, pad_results, widen_f16
from ._store import GrowArray, IdMap, RowStore

log = logging.getLogger(__name__)


@runtime_checkable
class VectorSource(Protocol):
    """Where an index reads vectors it does not own (e.g. the app's memory-mapped store)."""

    def get(self, ids: np.ndarray) -> np.ndarray: ...


class BaseIndex:
    """Common state and behaviour; subclasses add codes/trees and implement the search."""

    backend: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[BaseIndex]]] = {}  # backend name -> class (for load)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.backend:
            BaseIndex._registry[cls.backend] = cls

    def __init__(
        self,
        dim: int,
        model_id: str = "",
        seed: int = 0,
        *,
        source: VectorSource | None = None,
        **params: Any,
    ):
        if not isinstance(dim, int | np.integer) or dim < 1:
            raise IndexStateError(f"dim must be a positive integer, got {dim!r}")
        if source is not None and not callable(getattr(source, "get", None)):
            raise IndexStateError("source must have a get(ids) -> ndarray method")
        self._dim = int(dim)
        self._model_id = str(model_id or "")
        self.seed = int(seed)
        self._source = source
        self._store: RowStore | None = None if source is not None else RowStore(self._dim)
        self._row_ids = GrowArray(np.int64)
        self._alive = GrowArray(np.bool_)
        self._idmap = IdMap()
        self._live = 0
        self._mutations = 0  # bumped by every add/remove/compaction (cache invalidation)
        self._built = False
        self.params: dict[str, Any] = {}
        self._set_params(params)

    # ---- subclass hooks -------------------------------------------------------------
    def _set_params(self, params: dict[str, Any]) -> None:
        if params:
            raise TypeError(f"unknown {self.backend} parameters: {sorted(params)}")

    def _on_add(self, rows: np.ndarray, unit: np.ndarray) -> None:
        """New rows `rows` hold unit vectors `unit` (float32); called after bookkeeping."""

    def _after_add(self) -> None:
        """Called once at the end of `add` (rebucketing, drift checks)."""

    def _on_remove(self, rows: np.ndarray) -> None:
        """Rows were tombstoned."""

    def _query_rows(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def _restore(self, state: dict[str, Any], sections: dict[str, np.ndarray]) -> None:
        pass

    def build(self) -> None:
        raise NotImplementedError

    # ---- properties -----------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def built(self) -> bool:
        return self._built

    @property
    def needs_rebuild(self) -> bool:
        """True when `build()` should be called again (subclasses refine this)."""
        return not self._built

    def __len__(self) -> int:
        return self._live

    def __repr__(self) -> str:
        return f"<{type(self).__name__} dim={self._dim} n={self._live} model={self._model_id!r}>"

    def ids(self) -> np.ndarray:
        """All live ids (int64, in row order)."""
        return self._row_ids.view[self._alive.view].copy()

    def contains(self, ids) -> np.ndarray:
        ids = self._as_ids(ids)
        return self._lookup(ids) >= 0

    # ---- validation -----------------------------------------------------------------
    def _as_ids(self, ids) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise IndexStateError(f"ids must be a 1-D integer array, got {arr.dtype} {arr.shape}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and arr.min() < 0:
            raise IndexStateError("ids must be non-negative (-1 marks padding in results)")
        return arr

    def _as_unit(self, vectors, n: int | None, what: str = "vectors") -> np.ndarray:
        """Validate and L2-normalise rows -> float32 (n, dim)."""
        x = np.asarray(vectors)
        if x.ndim == 1 and n is None:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self._dim:
            raise IndexStateError(
                f"{what} must have shape (n, {self._dim}), got {x.shape} (wrong dimension?)"
            )
        if n is not None and x.shape[0] != n:
            raise IndexStateError(f"{n} ids but {x.shape[0]} vectors")
        if x.dtype.kind not in "fiu":
            raise IndexStateError(f"{what} must be numeric, got {x.dtype}")
        work = np.float64 if x.dtype == np.float64 else np.float32
        x = np.asarray(x, dtype=work)
        with np.errstate(over="ignore"):  # huge finite entries are handled below
            norms = np.linalg.norm(x, axis=1, keepdims=True)
        if not np.isfinite(norms).all():  # a NaN/inf entry, or squares that overflow float32
            if not np.isfinite(x).all():
                raise IndexStateError(f"{what} contain NaN or infinite values")
            norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
        if (norms == 0).any():
            raise IndexStateError(f"{what} contain all-zero rows (cosine is undefined)")
        out = x / norms  # one pass less than checking every entry first, and no extra copy
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def _as_query(self, vector) -> np.ndarray:
        x = np.asarray(vector)
        if x.ndim != 1:
            raise IndexStateError(
                f"query must be a 1-D vector of length {self._dim}, got {x.shape}"
            )
        return self._as_unit(x.reshape(1, -1), 1, "query")[0]

    def _check_k(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise IndexStateError(f"k must be an integer >= 1, got {k!r}")
        return int(k)

    def _check_ready(self) -> None:
        if not self._built:
            raise IndexStateError(f"{self.backend} index: call build() before querying")

    # ---- mutation -------------------------------------------------------------------
    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        return self._idmap.lookup(ids, self._row_ids.view, self._alive.view)

    def _as_matrix(self, vectors, n: int) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim != 2 or x.shape[1] != self._dim:
            raise IndexStateError(
                f"vectors must have shape (n, {self._dim}), got {x.shape} (wrong dimension?)"
            )
        if x.shape[0] != n:
            raise IndexStateError(f"{n} ids but {x.shape[0]} vectors")
        if x.dtype.kind not in "fiu":
            raise IndexStateError(f"vectors must be numeric, got {x.dtype}")
        return x

    def _chunk_rows(self) -> int:
        return max(1, (1 << 20) // self._dim)

    def _block_f32(self, x: np.ndarray) -> np.ndarray:
        """float32 copy of a block (fast path for float16; float64 stays exact until scaled)."""
        if x.dtype == np.float16:
            return f16_to_f32(x)
        return np.array(x, dtype=np.float64 if x.dtype == np.float64 else np.float32)

    def _row_norms(self, x: np.ndarray) -> np.ndarray:
        """L2 norms (float64) of every row; raises on NaN/Inf or all-zero rows."""
        norms = np.empty(len(x), dtype=np.float64)
        step = self._chunk_rows()
        for lo in range(0, len(x), step):
            blk = x[lo : lo + step]
            if blk.dtype == np.float16:
                bad = f16_bad_rows(np.ascontiguousarray(blk)).any()
                blk = f16_to_f32(blk)
            else:
                blk = self._block_f32(blk)
                bad = not np.isfinite(blk).all()
            if bad:
                raise IndexStateError("vectors contain NaN or infinite values")
            norms[lo : lo + step] = np.sqrt(np.einsum("ij,ij->i", blk, blk, dtype=np.float64))
        if len(norms) and not (norms > 0).all():
            raise IndexStateError("vectors contain all-zero rows (cosine is undefined)")
        if not np.isfinite(norms).all():
            raise IndexStateError("vectors are too large to normalise")
        return norms

    def add(self, ids, vectors) -> None:
        """Add (or replace) items. Vectors are L2-normalised; any float dtype is accepted.

        Everything is validated before anything changes, so a bad row leaves the index as it
        was. Work is done in ~1M-element chunks, so adding a large float16 batch needs little
        memory beyond the stored rows.
        """
        ids = self._as_ids(ids)
        x = self._as_matrix(vectors, len(ids))
        norms = self._row_norms(x)
        if len(ids) == 0:
            return
        if len(np.unique(ids)) != len(ids):  # keep the last occurrence of a repeated id
            _, last = np.unique(ids[::-1], return_index=True)
            keep = np.sort(len(ids) - 1 - last)
            ids, x, norms = ids[keep], x[keep], norms[keep]
        old = self._lookup(ids)
        if (old >= 0).any():
            self._tombstone(old[old >= 0])
        start = len(self._row_ids)
        rows = np.arange(start, start + len(ids), dtype=np.int64)
        self._row_ids.append(ids)
        self._alive.append(np.ones(len(ids), dtype=bool))
        self._live += len(ids)
        self._mutations += 1
        self._idmap.added(ids, rows, self._row_ids.view, self._alive.view)
        step = self._chunk_rows()
        for lo in range(0, len(ids), step):
            blk = self._block_f32(x[lo : lo + step])
            blk /= norms[lo : lo + step, None]
            unit = blk.astype(np.float32, copy=False)
            if self._store is not None:
                self._store.append(unit)
            self._on_add(rows[lo : lo + step], unit)
        self._after_add()

    def remove(self, ids) -> int:
        """Remove items by id; unknown ids are ignored. Returns how many were removed."""
        ids = self._as_ids(ids)
        rows = self._lookup(np.unique(ids))
        rows = rows[rows >= 0]
        if len(rows):
            self._tombstone(rows)
        return len(rows)

    def _tombstone(self, rows: np.ndarray) -> None:
        self._alive.view[rows] = False
        self._live -= len(rows)
        self._mutations += 1
        self._idmap.removed(self._row_ids.view[rows])
        self._on_remove(rows)

    def _compact(self) -> np.ndarray:
        """Drop dead rows (renumbering the rest); returns the kept old row numbers."""
        alive = self._alive.view
        keep = np.flatnonzero(alive)
        self._mutations += 1
        if len(keep) != len(alive):
            self._row_ids = GrowArray(np.int64, data=self._row_ids.view[keep].copy())
            self._alive = GrowArray(np.bool_, data=np.ones(len(keep), dtype=bool))
        if self._store is not None:
            self._store = self._store.compacted(keep)
        self._idmap.rebuild(self._row_ids.view, self._alive.view)
        return keep

    # ---- vector access --------------------------------------------------------------
    @property
    def _n_rows(self) -> int:
        return len(self._row_ids)

    def _fetch_rows(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Stored rows (float16 owned, or whatever the source returns) for live rows."""
        if self._store is not None:
            return self._store.take(rows, out=out)
        got = np.asarray(self._source.get(self._row_ids.view[rows]))
        if got.shape != (len(rows), self._dim):
            raise IndexStateError(
                f"source.get returned shape {got.shape}, expected {(len(rows), self._dim)}"
            )
        return got

    def _fetch_block(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi for streaming passes; dead rows are zero in source mode."""
        if self._store is not None:
            return self._store.block(lo, hi)
        live = np.flatnonzero(self._alive.view[lo:hi])
        out = np.zeros((hi - lo, self._dim), dtype=np.float32)
        if len(live):
            out[live] = self._fetch_rows(live + lo)
        return out

    def _source_rows(self, ids: np.ndarray, g16: np.ndarray, w32: np.ndarray) -> np.ndarray:
        """A source's rows of `ids` in the fast form (see the module docstring): its stored
        float16 rows gathered into `g16`, widened in `w32` (viewed as float32, returned),
        shifted: bit for bit what `source.get(ids)` gives, without its temporaries."""
        x = widen_f16(self._source.take_f16(ids, g16[: len(ids)]), w32[: len(ids)])
        x *= F16_SCALE  # = f16_to_f32, as source.get does it
        shift = getattr(self._source, "shift", None)
        if shift is not None:
            x -= shift
        return x

    def _unit_rows(self, rows: np.ndarray) -> np.ndarray:
        take = getattr(self._source, "take_f16", None) if self._store is None else None
        if callable(take):  # the fast form, a few rows at a time (cache-sized, no big temporaries)
            ids = self._row_ids.view[rows]
            out = np.empty((len(rows), self._dim), np.float32)
            step = max(1, (1 << 17) // self._dim)
            g = np.empty((min(step, len(rows)), self._dim), np.float16)
            w = np.empty(g.shape, np.int32)
            for lo in range(0, len(rows), step):
                hi = min(len(rows), lo + step)
                x = self._source_rows(ids[lo:hi], g, w)
                # = np.linalg.norm(x, axis=1), bit for bit (its x * x, sum and sqrt)
                norms = np.sqrt(np.add.reduce(np.square(x), axis=1, keepdims=True))
                norms[norms == 0] = 1.0
                np.divide(x, norms, out=out[lo:hi])
            return out
        got = self._fetch_rows(rows)
        # a new array either way (np.array copies), so it is scaled in place below
        x = f16_to_f32(got) if got.dtype == np.float16 else np.array(got, dtype=np.float32)
        if self._store is not None:
            x *= self._store.inv_norm[rows][:, None]
            return x
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        x /= norms
        return x

    def get_vectors(self, ids) -> np.ndarray:
        """Stored unit vectors (float32, len(ids) x dim) for live ids."""
        ids = self._as_ids(ids)
        rows = self._lookup(ids)
        if (rows < 0).any():
            missing = ids[rows < 0][:5].tolist()
            raise IndexStateError(f"unknown id(s) {missing} in {self.backend} index")
        return self._unit_rows(rows)

    def _exact_rows(self, queries: np.ndarray, k: int, exclude=None):
        """Exact top-k live rows by cosine (streaming); used by exact search and calibration."""
        return brute_force_knn(
            self._n_rows,
            self._fetch_block,
            queries,
            k,
            alive=self._alive.view,
            exclude=exclude,
            row_scale=self._row_scale(),
        )

    def _row_scale(self):
        """Per-row score multiplier for brute force: stored 1/norm, or compute (source)."""
        return self._store.inv_norm if self._store is not None else "normalise"

    # ---- search ---------------------------------------------------------------------
    def query(self, vector, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids int64, cosine float32), best first; fewer than k if the index is smaller."""
        self._check_ready()
        k = self._check_k(k)
        q = self._as_query(vector)
        if self._live == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rows, scores = self._query_rows(q, k)
        return self._row_ids.view[rows].astype(np.int64), scores.astype(np.float32)

    def query_batch(self, matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) ids and scores; rows padded with -1 / -inf where fewer than k exist."""
        self._check_ready()
        k = self._check_k(k)
        qs = self._as_unit(matrix, None, "queries")
        out_i = np.full((len(qs), k), -1, dtype=np.int64)
        out_s = np.full((len(qs), k), -np.inf, dtype=np.float32)
        if self._live == 0:
            return out_i, out_s
        for j, (ri, rs) in enumerate(self._query_rows_batch(qs, k)):
            out_i[j], out_s[j] = pad_results(self._row_ids.view[ri], rs, k)
        return out_i, out_s

    def _query_rows_batch(self, qs: np.ndarray, k: int):
        for q in qs:
            yield self._query_rows(q, k)

    # ---- persistence ----------------------------------------------------------------
    def memory_bytes(self) -> dict[str, int]:
        """Bytes of RAM held by index structures (vectors: only in-RAM, non-mapped parts)."""
        return {
            "ids": int(self._row_ids.nbytes() + self._alive.nbytes()),
            "id_map": self._idmap.nbytes(),
            "vectors_ram": self._store.ram_bytes() if self._store is not None else 0,
            "norms": self._store.norm_bytes() if self._store is not None else 0,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to one file atomically (vectors included unless using a source)."""
        state, sections = self._state()
        header = {
            "backend": self.backend,
            "dim": self._dim,
            "model_id": self._model_id,
            "count": self._live,
            "rows": self._n_rows,
            "seed": self.seed,
            "built": self._built,
            "params": self.params,
            "state": state,
            "has_vectors": self._store is not None,
        }
        all_sections = {"row_ids": self._row_ids.view, "alive": self._alive.view, **sections}
        if self._store is not None:
            all_sections["vectors"] = self._store.chunks() or np.empty((0, self._dim), np.float16)
            all_sections["inv_norm"] = self._store.inv_norm
        _persist.write(path, header, all_sections)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model_id: str | None = None,
        source: VectorSource | None = None,
        *,
        verify_vectors: bool = True,
    ):
        """Load a saved index. `model_id` given and different -> ModelMismatchError;
        truncated, corrupt or unknown-version files -> IndexFormatError. Owned vectors are
        memory-mapped; `verify_vectors=False` skips their checksum (faster start on big files).
        Called on BaseIndex it returns whichever backend wrote the file.
        """
        header, sections = _persist.read(
            path, cls.backend, model_id, source is not None, verify_vectors
        )
        target = cls
        if not cls.backend:
            target = BaseIndex._registry.get(str(header.get("backend")))
            if target is None:
                raise IndexFormatError(path, f"unknown index backend {header.get('backend')!r}")
        try:
            obj = target._from_saved(header, sections, source)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise IndexFormatError(path, f"inconsistent index contents: {e!r}") from e
        obj._after_load(path, verify_vectors)
        return obj

    @classmethod
    def _from_saved(cls, header, sections, source):
        """Rebuild an index from a file's header and sections (see `load`)."""
        obj = cls.__new__(cls)
        BaseIndex.__init__(
            obj, int(header["dim"]), header["model_id"], int(header["seed"]), source=source
        )
        obj.params = dict(header["params"])
        n = int(header["rows"])
        row_ids, alive = sections["row_ids"], sections["alive"]
        if row_ids.shape != (n,) or alive.shape != (n,) or int(alive.sum()) != header["count"]:
            raise ValueError("row tables disagree with the header")
        obj._row_ids = GrowArray(np.int64, data=row_ids)
        obj._alive = GrowArray(np.bool_, data=alive.astype(bool))
        obj._live = int(header["count"])
        if source is None:
            vec = sections["vectors"]
            if vec.shape != (n, obj._dim):
                raise ValueError(f"vector section has shape {vec.shape}, expected {(n, obj._dim)}")
            obj._store = RowStore(obj._dim, base=vec, inv_norm=sections["inv_norm"])
        obj._idmap.rebuild(obj._row_ids.view, obj._alive.view)
        obj._built = bool(header["built"])
        obj._restore(header["state"], sections)
        return obj

    def _after_load(self, path: str | os.PathLike, verify: bool) -> None:
        """Hook for backends with data outside the container (Annoy's forest file)."""

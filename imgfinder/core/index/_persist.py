"""Saving and loading any index backend through the single-file container (see _format)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from ...errors import IndexFormatError, IndexStateError, ModelMismatchError
from . import _format
from ._store import GrowArray, RowStore

if TYPE_CHECKING:
    from .base import BaseIndex

log = logging.getLogger(__name__)


def save(index: BaseIndex, path: str | os.PathLike) -> None:
    """Header (identity, params, backend state) + row tables + backend sections + vectors."""
    state, sections = index._state()
    header = {
        "backend": index.backend,
        "dim": index._dim,
        "model_id": index._model_id,
        "count": index._live,
        "rows": index._n_rows,
        "seed": index.seed,
        "built": index._built,
        "params": index.params,
        "state": state,
        "has_vectors": index._store is not None,
    }
    all_sections = {"row_ids": index._row_ids.view, "alive": index._alive.view, **sections}
    if index._store is not None:
        all_sections["vectors"] = index._store.chunks() or np.empty((0, index._dim), np.float16)
        all_sections["inv_norm"] = index._store.inv_norm
    _format.write_container(path, header, all_sections)
    log.info("saved %s index (%d items) to %s", index.backend, index._live, path)


def load(cls, path, model_id, source, verify_vectors: bool) -> BaseIndex:
    """Validate identity before reading sections, then rebuild the object (see BaseIndex.load)."""
    header = _format.read_header(path)
    backend = header.get("backend")
    if cls.backend and backend != cls.backend:
        raise IndexFormatError(path, f"is a {backend!r} index, not {cls.backend!r}")
    stored = str(header.get("model_id", ""))
    if model_id is not None and stored != model_id:
        raise ModelMismatchError(
            f"index {os.fspath(path)} was built by model {stored!r}, "
            f"but the current model is {model_id!r}; rebuild the index",
            stored=stored,
            current=model_id,
        )
    if not header.get("has_vectors") and source is None:
        raise IndexStateError(f"{os.fspath(path)} was saved without vectors; load it with source=")
    skip = ("vectors", "inv_norm") if source is not None else ()
    header, sections = _format.read_container(
        path, mmap_sections=("vectors",), skip_sections=skip, verify_mmapped=verify_vectors
    )
    target = cls if cls.backend else _backend_class(backend, path)
    try:
        obj = _from_saved(target, header, sections, source)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise IndexFormatError(path, f"inconsistent index contents: {e!r}") from e
    obj._after_load(path, verify_vectors)
    return obj


def _from_saved(cls, header, sections, source) -> BaseIndex:
    from .base import BaseIndex

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


def _backend_class(name, path) -> type[BaseIndex]:
    from . import BACKENDS

    try:
        return BACKENDS[name]
    except KeyError:
        raise IndexFormatError(path, f"unknown index backend {name!r}") from None

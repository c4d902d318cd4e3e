"""Vector indexes for cosine search: the project's LSH (default), Annoy and exact brute force."""

from __future__ import annotations

import os
from typing import Any

from .annoy_index import AnnoyIndex
from .base import BaseIndex, VectorSource
from .exact import ExactIndex
from .lsh import LSHIndex

BACKENDS: dict[str, type[BaseIndex]] = {"lsh": LSHIndex, "annoy": AnnoyIndex, "exact": ExactIndex}
DEFAULT_BACKEND = "lsh"


def open_index(backend: str, dim: int, **kw: Any) -> BaseIndex:
    """Create an empty index of the named backend (kwargs go to its constructor)."""
    try:
        cls = BACKENDS[backend]
    except KeyError:
        raise ValueError(
            f"unknown index backend {backend!r}; choose from {sorted(BACKENDS)}"
        ) from None
    return cls(dim, **kw)


def load_index(
    path: str | os.PathLike,
    model_id: str | None = None,
    source: VectorSource | None = None,
    **kw: Any,
) -> BaseIndex:
    """Load a saved index of whichever backend wrote it (see BaseIndex.load for errors)."""
    return BaseIndex.load(path, model_id=model_id, source=source, **kw)


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "AnnoyIndex",
    "BaseIndex",
    "ExactIndex",
    "LSHIndex",
    "VectorSource",
    "load_index",
    "open_index",
]

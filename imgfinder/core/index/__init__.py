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


def stored_recall(path: str | os.PathLike) -> dict[str, float] | None:
    """The recall@10 an index measured on held-out rows at build time, read from its file
    header alone ({"recall_at_10", "queries", "target"}); None when the file is missing,
    unreadable, or its backend does not measure recall (exact is exact, Annoy is not checked)."""
    from ._format import read_header

    try:
        header = read_header(path)
    except Exception:  # noqa: BLE001 - a status line must never fail on a damaged index
        return None
    rec = (header.get("state") or {}).get("recall")
    return dict(rec) if rec else None


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
    "stored_recall",
]

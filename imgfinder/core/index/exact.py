"""Exact brute-force cosine search over the float16 store: the reference the others are judged by."""

from __future__ import annotations

import logging

import numpy as np

from .base import BaseIndex

log = logging.getLogger(__name__)


class ExactIndex(BaseIndex):
    """Scores every live row (chunked float16 -> float32 widening + BLAS matmul, argpartition).

    Memory stays bounded (one chunk of ~4M float32 values) whatever the library size, and
    `query_batch` scores all queries per chunk so a batch costs little more than one query.
    Adds and removes are visible immediately; `build()` only compacts removed rows.
    """

    backend = "exact"

    def build(self) -> None:
        """Mark ready; drops removed rows so later scans skip them."""
        if self._n_rows != self._live:
            self._compact()
        self._built = True

    @property
    def needs_rebuild(self) -> bool:
        return not self._built

    def _on_remove(self, rows: np.ndarray) -> None:
        # Removed rows are masked in every scan; drop them once they are a quarter of it.
        dead = self._n_rows - self._live
        if self._built and dead > max(1024, self._n_rows // 4):
            self._compact()

    def _query_rows(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows, scores = self._exact_rows(q[None, :], k)
        ok = np.isfinite(scores[0])
        return rows[0][ok], scores[0][ok]

    def _query_rows_batch(self, qs: np.ndarray, k: int):
        rows, scores = self._exact_rows(qs, k)
        for r, s in zip(rows, scores, strict=True):
            ok = np.isfinite(s)
            yield r[ok], s[ok]

"""The view of an LSHIndex that calibration works on (`_lsh_tune.Tunable`): the only way
`_lsh_tune` reads or changes an index (split from lsh.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .lsh import LSHIndex


class Tuning:
    """An LSHIndex as calibration sees it (implements `_lsh_tune.Tunable`): the only way
    `_lsh_tune` reads or changes an index."""

    def __init__(self, index: LSHIndex):
        self._ix = index

    params = property(lambda self: self._ix.params)
    seed = property(lambda self: self._ix.seed)
    n_rows = property(lambda self: self._ix._n_rows)
    live = property(lambda self: self._ix._live)
    dim = property(lambda self: self._ix._dim)
    words = property(lambda self: self._ix._W)
    sketch_dims = property(lambda self: self._ix._sk_m)
    refine_dims = property(lambda self: self._ix._rf_m)
    owns_vectors = property(lambda self: self._ix._store is not None)
    compiled = property(lambda self: self._ix._can_compile())
    table_bits = property(lambda self: self._ix._b)
    tables = property(lambda self: self._ix._L)
    max_probes = property(lambda self: self._ix._max_probes)
    mean = property(lambda self: self._ix._mean)
    state_key = property(lambda self: (self._ix._n_rows, self._ix._live, self._ix._mutations))

    @property
    def truth_cache(self):
        return self._ix.__dict__.get("_truth_cache")

    @truth_cache.setter
    def truth_cache(self, value) -> None:
        self._ix._truth_cache = value

    def unit_rows(self, rows: np.ndarray) -> np.ndarray:
        return self._ix._unit_rows(rows)

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self._ix._alive.view)

    def exact_knn(self, qs: np.ndarray, k: int, exclude: np.ndarray):
        return self._ix._exact_rows(qs, k, exclude=exclude)

    def relayout(self, b: int) -> None:
        self._ix._relayout(b)

    def encode(self, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        projs = self._ix._project(qs)
        return projs, self._ix._pack(projs)

    def entries(self, projs: np.ndarray, codes: np.ndarray, probes: int) -> float:
        return self._ix._n_entries(projs, codes, probes)

    def candidate_sets(self, projs, codes, probes: int, exclude: np.ndarray):
        return self._ix._candidate_sets(projs, codes, probes, 0, exclude)

    def sketch_weights(self, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._ix._sketch_query(qs)

    def refine_scores(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        return self._ix._refine_scores(rows, w)

    def sketch_scores(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        return self._ix._sketch_scores(rows, w)

    def search(self, qs, projs, codes, k: int, exclude: np.ndarray):
        return self._ix._search_many(qs, projs, codes, k, exclude)

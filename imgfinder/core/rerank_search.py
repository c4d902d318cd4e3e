"""`Library.search` with re-ranking (core/rerank.py): the one place search meets Reranker.

The query is embedded as usual; the index is asked through `Library.query_index` in its
own space (centred cosine), vectors come from `Library.index_vectors`, files from the
catalog. Query expansion and DBA need nothing stored; local verification decodes the
query and the top results once each (SIFT features cached for the Library's lifetime).
"""

from __future__ import annotations

import os

import numpy as np

from imgfinder.core.dupes import rawpairs
from imgfinder.core.rerank import Reranker, RerankOptions
from imgfinder.core.types import Hit


def reranked_search(
    lib,
    vector: np.ndarray,
    k: int,
    options: RerankOptions,
    *,
    query_path: str | None = None,
    raw_pairs_as_one: bool = False,
) -> list[Hit]:
    """The k best hits for a query `vector` (Library.embed) after re-ranking; `query_path`:
    the query's file, which local verification needs (skipped without it)."""
    if "diffusion" in options.methods:
        raise ValueError("diffusion re-ranking is available in `imgfinder eval` only")
    lib.check_model()
    query = lib.query_space(vector)
    if query_path is not None:
        query_path = os.path.abspath(os.fspath(query_path))

    def path_of(ids: np.ndarray) -> list[str]:
        rows = lib.catalog.images([int(i) for i in ids])
        return [rows[int(i)].path if int(i) in rows else "" for i in ids]

    reranker = _reranker_of(lib, options, path_of)
    want = 2 * k if raw_pairs_as_one else k
    ids, scores = reranker.rank(query, want, query_path=query_path)
    rows = lib.catalog.images(ids.tolist())
    hits = [Hit(int(i), rows[int(i)].path, float(s)) for i, s in zip(ids, scores) if int(i) in rows]
    if raw_pairs_as_one:
        hits = rawpairs.collapse_pairs(hits, lib.raw_companions([h.image_id for h in hits]))
    return hits[:k]


def _reranker_of(lib, options: RerankOptions, path_of) -> Reranker:
    """One Reranker per Library and options, so verification's feature cache is kept."""
    cache = lib.__dict__.setdefault("_rerankers", {})
    key = (options.methods, options.shortlist, options.verify_k, options.min_inliers)
    if key not in cache:
        cache[key] = Reranker(options, lib.query_index, lib.index_vectors, path_of=path_of)
    return cache[key]

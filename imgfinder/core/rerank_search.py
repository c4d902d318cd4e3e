"""`Library.search` with re-ranking (core/rerank.py): the one place search meets Reranker.

The query is embedded as usual and put in the index's space (`Library.query_space`:
centred cosine); the index is asked through `Library.query_index`, vectors come from
`Library.index_vectors`, files from the catalog. Query expansion and DBA need nothing
stored; local verification decodes the query and the top results once each (SIFT features
cached for the Library's lifetime); diffusion builds its offline part over the whole
library in memory (library_diffusion).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import weakref

import numpy as np

from imgfinder.core.rerank import Diffusion, Reranker, RerankOptions
from imgfinder.core.types import Hit
from imgfinder.errors import ImgfinderError

log = logging.getLogger(__name__)


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
    return lib.hits(ids, scores, k, raw_pairs_as_one=raw_pairs_as_one)


_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _per_library(lib) -> dict:
    """This module's state for one Library (its Rerankers, its diffusion), gone with it."""
    return _STATE.setdefault(lib, {})


def _reranker_of(lib, options: RerankOptions, path_of) -> Reranker:
    """One Reranker per Library and options, so verification's feature cache is kept."""
    cache = _per_library(lib).setdefault("rerankers", {})
    key = (options.methods, options.shortlist, options.verify_k, options.min_inliers)
    diffusion = library_diffusion(lib) if "diffusion" in options.methods else None
    if key not in cache or cache[key].diffusion is not diffusion:
        cache[key] = Reranker(
            options, lib.query_index, lib.index_vectors, path_of=path_of, diffusion=diffusion
        )
    return cache[key]


def library_diffusion(lib) -> Diffusion:
    """Diffusion's offline part over the whole library, in memory: built on the first
    diffusion search of a Library (the app keeps it for the session; each `imgfinder
    search` process builds it again) and rebuilt when the library's vectors change
    (their ids, model or centre). Nothing is written: search never writes."""
    pairs = lib.catalog.vector_rows(lib.model_id)
    ids = np.asarray(sorted(i for i, _ in pairs), np.int64)
    key = (lib.index_model_id, len(ids), hashlib.sha256(ids.tobytes()).hexdigest())
    held = _per_library(lib).get("diffusion")
    if held is not None and held[0] == key:
        return held[1]
    if len(ids) < 2:
        raise ImgfinderError("diffusion re-ranking needs a library of at least two photos")
    vectors = np.concatenate(
        [lib.index_vectors(ids[lo : lo + 8192]) for lo in range(0, len(ids), 8192)]
    )
    t = time.perf_counter()
    diffusion = Diffusion(ids, vectors)
    log.info("diffusion over %d vectors built in %.1f s", len(ids), time.perf_counter() - t)
    _per_library(lib)["diffusion"] = (key, diffusion)
    return diffusion

"""Retrieval evaluation on a folder-per-class dataset: mAP, P@n, recall@n, latency.

Every image queries all others (itself excluded). Metrics come from the chosen
index's ranking (asked for every item, so an index that fails to return a
relevant image is charged for it); exact search gives the reference mAP and the
top-10 overlap. The seed papers call mean P@n "MAP@n"; `paper_map_at` reports it
with the query excluded (`excluded`) and with the query counted as the first hit
(`included`), so their tables can be reproduced either way.

Two protocols (`queries`): "all" (every image queries the others: class-level sets such as
the flowers) and "first" (instance-level sets: one folder per object or scene, the first
image of each folder, by file name, queries all the others, its folder's images being the
relevant ones). A `Reranker` (core/rerank.py) re-orders each query's results when given;
the exact reference is always plain exact search.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgfinder.core.index import ExactIndex

CUTOFFS = (5, 10, 20, 25, 50)


def average_precision(relevant: np.ndarray, n_relevant: int) -> float:
    """AP of one ranking; `relevant` is a boolean per rank, `n_relevant` all that exist."""
    if n_relevant == 0:
        return 0.0
    hits = np.cumsum(relevant)
    ranks = np.arange(1, len(relevant) + 1)
    return float((hits / ranks)[relevant.astype(bool)].sum() / n_relevant)


def precision_at(relevant: np.ndarray, n: int) -> float:
    return float(np.sum(relevant[:n])) / n


def recall_at(relevant: np.ndarray, n: int, n_relevant: int) -> float:
    return float(np.sum(relevant[:n])) / n_relevant if n_relevant else 0.0


@dataclass
class QueryResult:
    relevant: np.ndarray  # bool per rank, query excluded
    n_relevant: int


@dataclass
class EvalReport:
    images: int
    classes: int
    map: float
    precision_at: dict[str, float]
    recall_at: dict[str, float]
    paper_map_at: dict[str, dict[str, float]]
    query_ms_median: float
    query_ms_p95: float
    exact_map: float
    map_ratio: float
    index_recall_at_10: float
    index: str
    queries: int = 0  # how many images were queries (all of them, or the first of each class)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.update(d.pop("extra"))
        return d


def summarise(results: Sequence[QueryResult], cutoffs: Sequence[int] = CUTOFFS) -> dict:
    """Mean AP, P@n, recall@n and the papers' MAP@n (query excluded / included)."""
    out = {
        "map": float(np.mean([average_precision(r.relevant, r.n_relevant) for r in results])),
        "precision_at": {},
        "recall_at": {},
        "paper_map_at": {"excluded": {}, "included": {}},
    }
    for n in cutoffs:
        p = [precision_at(r.relevant, n) for r in results]
        out["precision_at"][str(n)] = float(np.mean(p))
        out["recall_at"][str(n)] = float(
            np.mean([recall_at(r.relevant, n, r.n_relevant) for r in results])
        )
        out["paper_map_at"]["excluded"][str(n)] = float(np.mean(p))
        # the query itself at rank 1, then the first n-1 others
        inc = [(1 + float(np.sum(r.relevant[: n - 1]))) / n for r in results]
        out["paper_map_at"]["included"][str(n)] = float(np.mean(inc))
    return out


def dataset_labels(dataset: Path, files: Sequence[str]) -> list[str]:
    """Class of each file = its top-level folder under the dataset directory."""
    labels = []
    for f in files:
        rel = Path(f).relative_to(dataset)
        if len(rel.parts) < 2:
            labels.append("")  # files at the top level belong to no class
        else:
            labels.append(rel.parts[0])
    return labels


QUERY_PROTOCOLS = ("all", "first")


def first_of_each(labels: Sequence[str], paths: Sequence[str]) -> list[int]:
    """Positions of the first file (by path) of each class: the "first" protocol's queries."""
    first: dict[str, int] = {}
    for i, (label, path) in enumerate(zip(labels, paths)):
        if label and (label not in first or path < paths[first[label]]):
            first[label] = i
    return sorted(first.values())


def evaluate_vectors(
    ids: np.ndarray,
    vectors: np.ndarray,
    labels: Sequence[str],
    index,
    *,
    cutoffs: Sequence[int] = CUTOFFS,
    latency_k: int = 50,
    queries: Sequence[int] | None = None,
    reranker=None,
    paths: Sequence[str] | None = None,
) -> EvalReport:
    """Evaluate `index` (already built over ids/vectors) against exact search.
    `queries`: positions of the query images (None: every image); `reranker`: re-ranks
    each query's results (`paths`, the files, for local verification)."""
    ids = np.asarray(ids, dtype=np.int64)
    labels_arr = np.asarray(labels)
    label_of = dict(zip(ids.tolist(), labels_arr.tolist()))
    n = len(ids)
    exact = ExactIndex(dim=vectors.shape[1])
    exact.add(ids, vectors)
    exact.build()
    index_results, exact_results, overlaps, times = [], [], [], []
    positions = range(n) if queries is None else [int(q) for q in queries]
    for i in positions:
        qid, vec = int(ids[i]), vectors[i]
        label = labels_arr[i]
        n_rel = int(np.sum(labels_arr == label)) - 1
        qpath = None if paths is None else paths[i]
        t = time.perf_counter()
        if reranker is None:
            index.query(vec, min(latency_k + 1, n))
            times.append((time.perf_counter() - t) * 1000)
            got, _ = index.query(vec, n)
        else:  # one call, timed: the whole ranking (re-ranking work is the same for any k)
            got, _ = reranker.rank(vec, n - 1, exclude=qid, query_path=qpath)
            times.append((time.perf_counter() - t) * 1000)
        ref, _ = exact.query(vec, n)
        got = [g for g in got.tolist() if g != qid and g >= 0]
        ref = [r for r in ref.tolist() if r != qid]
        index_results.append(
            QueryResult(np.array([label_of[g] == label for g in got], bool), n_rel)
        )
        exact_results.append(
            QueryResult(np.array([label_of[r] == label for r in ref], bool), n_rel)
        )
        overlaps.append(len(set(got[:10]) & set(ref[:10])) / max(1, min(10, len(ref))))
    s = summarise(index_results, cutoffs)
    exact_map = summarise(exact_results, cutoffs)["map"]
    times.sort()
    return EvalReport(
        images=n,
        classes=len(set(labels_arr.tolist())),
        queries=len(positions),
        map=s["map"],
        precision_at=s["precision_at"],
        recall_at=s["recall_at"],
        paper_map_at=s["paper_map_at"],
        query_ms_median=float(statistics.median(times)),
        query_ms_p95=float(times[min(len(times) - 1, int(0.95 * len(times)))]),
        exact_map=exact_map,
        map_ratio=s["map"] / exact_map if exact_map else 0.0,
        index_recall_at_10=float(np.mean(overlaps)),
        index=getattr(index, "backend", type(index).__name__),
    )

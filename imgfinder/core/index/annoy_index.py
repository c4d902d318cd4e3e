"""Annoy (random-projection forest, angular metric) behind the common index interface.

Annoy items are our row numbers; Annoy's angular distance d between unit vectors is turned
into cosine with cos = 1 - d**2 / 2. Annoy computes that distance exactly on its own float32
copy of every candidate it visits, so its top-n list is already exactly re-ranked (and since
it is fed the same float16-rounded unit vectors the other backends store, its scores agree
with theirs to float32 precision).

Annoy cannot change a built forest. Here rows added after `build()` are kept pending and
searched exactly (brute force) next to the forest, removed rows are filtered from Annoy's
answers (asking Annoy for k + removed items so k survive), and `needs_rebuild` turns True
once pending plus removed rows exceed 10% of the forest; `build()` rebuilds from the stored
float16 vectors (owned or `source=`), which is also what `get_vectors` reads.

Parameters (kwargs): ``n_trees`` default clip(round(2 * log2(n)), 8, 64), the usual
recall/memory trade-off; each tree costs ~n/(dim+2) split nodes of dim floats, so trees are
cheap in memory at high dim but take build time. ``search_k`` (nodes inspected per query)
defaults to a calibration like the LSH one: stored rows are queried against their exact
10-NN; search_k doubles from n_trees * 10 until recall minus three standard errors of the
per-query mean reaches ``target_recall`` (0.95), then two bisection steps narrow it. It
scales linearly with k for other k.

Files: Annoy can only memory-map a whole file of its own, so `save(path)` writes the forest
to ``<path>.<token>.annoy`` first, then atomically writes the container at `path` whose
header names that sidecar (with its size and crc32); old sidecars are deleted afterwards.
A crash at any point leaves the previous pair intact.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import fsync_dir
from ...errors import IndexFormatError, IndexStateError
from ._kernels import brute_force_knn, topk_desc
from .base import BaseIndex

log = logging.getLogger(__name__)

_DEFAULTS: dict[str, Any] = {
    "n_trees": None,
    "search_k": None,
    "target_recall": 0.95,
    "calib_queries": 384,
    "n_jobs": -1,
}
_CALIB_K = 10


def _annoy():
    try:
        import annoy
    except ImportError as e:  # pragma: no cover - annoy is a declared dependency
        raise IndexStateError("the annoy backend needs the 'annoy' package") from e
    return annoy


class AnnoyIndex(BaseIndex):
    """Annoy forest + exact search over rows added since the last build."""

    backend = "annoy"

    def _set_params(self, params: dict[str, Any]) -> None:
        unknown = set(params) - set(_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown annoy parameters: {sorted(unknown)}")
        self.params = {**_DEFAULTS, **params}
        self._forest = None
        self._n_forest = 0  # rows 0.._n_forest-1 are in the forest
        self._dead_forest = 0
        self._search_k = 0
        self._n_trees = 0
        self._forest_file: str | None = None
        self._sidecar_meta: dict[str, Any] = {}

    # ---- build ------------------------------------------------------------------------
    def build(self) -> None:
        """(Re)build the forest from all live vectors and calibrate search_k."""
        self._compact()
        n = self._n_rows
        self._n_trees = int(
            self.params["n_trees"] or np.clip(round(2 * math.log2(max(n, 2))), 8, 64)
        )
        self._forest, self._forest_file = None, None
        self._n_forest, self._dead_forest = 0, 0
        self._built = True
        if n == 0:
            return
        forest = _annoy().AnnoyIndex(self._dim, "angular")
        forest.set_seed(self.seed)
        step = max(1, (1 << 22) // self._dim)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            block = self._unit_rows(np.arange(lo, hi))
            for i, v in enumerate(block.tolist()):
                forest.add_item(lo + i, v)
        forest.build(self._n_trees, n_jobs=int(self.params["n_jobs"]))
        self._forest = forest
        self._n_forest = n
        self._calibrate()
        log.info("annoy build: n=%d trees=%d search_k/10=%d", n, self._n_trees, self._search_k)

    def _calibrate(self) -> None:
        p = self.params
        if p["search_k"]:
            self._search_k = int(p["search_k"])
            return
        n = self._n_forest
        self._search_k = self._n_trees * _CALIB_K
        if n <= 4 * _CALIB_K:
            self._search_k = max(self._search_k, n * self._n_trees)
            return
        rng = np.random.default_rng(self.seed + 1)
        sample = np.sort(rng.choice(n, min(int(p["calib_queries"]), n), replace=False))
        qs = self._unit_rows(sample)
        truth, _ = self._exact_rows(qs, _CALIB_K, exclude=sample)
        target, nq = float(p["target_recall"]), len(sample)

        def passes(search_k: int) -> bool:
            per_q = np.empty(nq)
            for j in range(nq):
                got = self._forest.get_nns_by_vector(qs[j].tolist(), _CALIB_K + 1, search_k)
                got = [g for g in got if g != sample[j]][:_CALIB_K]
                per_q[j] = len(np.intersect1d(got, truth[j])) / _CALIB_K
            return per_q.mean() - 3.0 * per_q.std() / math.sqrt(nq) >= target

        lo, hi = 0, self._search_k
        while not passes(hi):
            if hi >= 4 * n * self._n_trees:
                log.warning("annoy calibration could not reach recall %.3f", target)
                break
            lo, hi = hi, hi * 2
        else:
            for _ in range(2):  # narrow the last doubling step: two bisections
                mid = (lo + hi) // 2
                if mid <= lo:
                    break
                if passes(mid):
                    hi = mid
                else:
                    lo = mid
        self._search_k = hi

    # ---- updates ----------------------------------------------------------------------
    def _on_remove(self, rows: np.ndarray) -> None:
        if self._built:
            self._dead_forest += int((rows < self._n_forest).sum())

    @property
    def needs_rebuild(self) -> bool:
        """True before the first build or when >10% of the forest is stale."""
        if not self._built:
            return True
        stale = (self._n_rows - self._n_forest) + self._dead_forest
        return stale > max(64, self._n_forest // 10)

    # ---- search -----------------------------------------------------------------------
    def _query_rows(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.empty(0, np.int64)
        scores = np.empty(0, np.float32)
        if self._n_forest:
            want = k + self._dead_forest
            search_k = max(self._search_k * max(k, _CALIB_K) // _CALIB_K, want * self._n_trees)
            got, dist = self._forest.get_nns_by_vector(
                q.tolist(), want, search_k, include_distances=True
            )
            rows = np.asarray(got, dtype=np.int64)
            d = np.asarray(dist, dtype=np.float64)
            scores = (1.0 - d * d / 2.0).astype(np.float32)
            if self._dead_forest:
                ok = self._alive.view[rows]
                rows, scores = rows[ok], scores[ok]
        if self._n_rows > self._n_forest:  # rows added since build: exact search
            lo = self._n_forest
            r, s = brute_force_knn(
                self._n_rows - lo,
                lambda a, b: self._fetch_block(lo + a, lo + b),
                q[None, :],
                k,
                alive=self._alive.view[lo:],
                row_scale=self._store.inv_norm[lo:] if self._store is not None else "normalise",
            )
            ok = np.isfinite(s[0])
            rows = np.concatenate([rows, r[0][ok] + lo])
            scores = np.concatenate([scores, s[0][ok]])
        top = topk_desc(scores, k)
        return rows[top], scores[top]

    # ---- persistence ------------------------------------------------------------------
    def forest_bytes(self) -> int:
        """Size of Annoy's node array (its float32 copy of every vector plus split planes):
        in RAM after build, memory-mapped after load; known once saved or loaded (else 0)."""
        f = getattr(self, "_forest_file", None)
        return os.path.getsize(f) if f and os.path.exists(f) else 0

    def save(self, path: str | os.PathLike) -> None:
        """Write `<path>.<token>.annoy` (the forest) then the container at `path`, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sidecar = None
        if self._forest is not None:
            sidecar = path.with_name(f"{path.name}.{secrets.token_hex(6)}.annoy")
            tmp = sidecar.with_name(sidecar.name + ".tmp")
            if not self._forest.save(os.fspath(tmp)):
                raise OSError(f"annoy could not write {tmp}")
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, sidecar)
            fsync_dir(path.parent)
            self._sidecar_meta = {
                "annoy_file": sidecar.name,
                "annoy_size": sidecar.stat().st_size,
                "annoy_crc32": _file_crc(sidecar),
            }
            self._forest_file = os.fspath(sidecar)
        super().save(path)
        for old in path.parent.glob(f"{path.name}.*.annoy"):
            if sidecar is None or old.name != sidecar.name:
                try:
                    old.unlink()
                except OSError:  # still mapped elsewhere (Windows): harmless leftover
                    log.debug("could not delete stale annoy file %s", old)

    def _state(self):
        state = {
            "n_trees": self._n_trees,
            "search_k": self._search_k,
            "n_forest": self._n_forest,
            "dead_forest": self._dead_forest,
        }
        if self._forest is not None:
            state.update(self._sidecar_meta)
        return state, {}

    def _restore(self, state, sections) -> None:
        self._set_params({k: v for k, v in self.params.items() if k in _DEFAULTS})
        self._n_trees, self._search_k = int(state["n_trees"]), int(state["search_k"])
        self._n_forest, self._dead_forest = int(state["n_forest"]), int(state["dead_forest"])
        if self._n_forest > self._n_rows:
            raise ValueError("forest larger than the row table")

    def _after_load(self, path: Path, verify: bool) -> None:
        if self._built and self._n_forest:
            self._open_forest(Path(path), verify)

    def _open_forest(self, path: Path, verify: bool) -> None:
        from ._format import read_header

        state = read_header(path)["state"]
        name = str(state.get("annoy_file", ""))
        if not name or os.path.basename(name) != name:
            raise IndexFormatError(path, "corrupt header: bad annoy file name")
        sidecar = path.with_name(name)
        if not sidecar.exists():
            raise IndexFormatError(path, f"annoy forest file {name} is missing")
        if sidecar.stat().st_size != int(state["annoy_size"]):
            raise IndexFormatError(path, f"annoy forest file {name} is truncated or replaced")
        if verify and _file_crc(sidecar) != int(state["annoy_crc32"]):
            raise IndexFormatError(path, f"annoy forest file {name} is corrupt (checksum)")
        forest = _annoy().AnnoyIndex(self._dim, "angular")
        if not forest.load(os.fspath(sidecar)):
            raise IndexFormatError(path, f"annoy could not load {name}")
        if forest.get_n_items() != self._n_forest:
            raise IndexFormatError(path, "annoy forest does not match the index header")
        self._forest = forest
        self._forest_file = os.fspath(sidecar)
        self._sidecar_meta = {k: state[k] for k in ("annoy_file", "annoy_size", "annoy_crc32")}


def _file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc

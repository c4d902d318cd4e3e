"""Seeded synthetic vectors shaped like pooled CNN (ReLU) features, for benchmarks and tests."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


class SyntheticFeatures:
    """A fixed random "feature model"; `sample` draws float16 rows from it in bounded chunks.

    Real pooled CNN features are non-negative (ReLU), share a large positive mean (uncentred
    cosine between unrelated photos is typically 0.4-0.7), have low intrinsic dimension and are
    clustered at several scales (categories, then bursts of near-identical shots) with clusters
    that overlap. Each property matters to an ANN index: the shared mean breaks un-centred
    hyperplane hashing, overlap and the latent dimension set how hard the true 10-NN are to
    separate from the next hundred. The model is:

        z = category centre + sub-cluster offset + point noise      (in a `latent_dim` space)
        x = relu(mean + A @ z + isotropic noise)                    (in `dim` space)

    Base rows and held-out queries drawn from one instance share categories and sub-clusters,
    so queries have realistic neighbours without being copies of base rows.
    """

    def __init__(
        self,
        dim: int,
        *,
        seed: int = 0,
        latent_dim: int = 32,
        n_categories: int = 400,
        subclusters_per_category: int = 50,
        category_spread: float = 1.0,
        subcluster_spread: float = 0.55,
        point_spread: float = 0.35,
        noise: float = 0.35,
        mean_level: float = 1.2,
    ):
        self.dim = dim
        self.latent_dim = latent_dim
        rng = np.random.default_rng(seed)
        self._centres = rng.standard_normal((n_categories, latent_dim)).astype(np.float32)
        self._centres *= category_spread
        # Category popularity is skewed, as in real libraries (many beach photos, few of cats).
        w = rng.lognormal(0.0, 1.0, n_categories)
        self._cat_p = w / w.sum()
        n_sub = n_categories * subclusters_per_category
        self._sub_cat = rng.integers(0, n_categories, n_sub)
        self._sub_off = rng.standard_normal((n_sub, latent_dim)).astype(np.float32)
        self._sub_off *= subcluster_spread
        self._n_sub = n_sub
        self._subs_of_cat = [np.flatnonzero(self._sub_cat == c) for c in range(n_categories)]
        self._point_spread = point_spread
        self._noise = noise
        self._mix = (rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)).astype(
            np.float32
        )
        # Positive, uneven per-dimension mean: a few channels fire for everything.
        self._mean = (mean_level * rng.gamma(2.0, 0.5, dim)).astype(np.float32)

    def sample(self, n: int, seed: int, *, chunk: int = 8192) -> np.ndarray:
        """Draw `n` float16 rows; at most `chunk` float32 rows are live at once."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float16)
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            cats = rng.choice(len(self._cat_p), size=m, p=self._cat_p)
            subs = np.fromiter(
                (
                    self._subs_of_cat[c][rng.integers(len(self._subs_of_cat[c]))]
                    if len(self._subs_of_cat[c])
                    else rng.integers(self._n_sub)
                    for c in cats
                ),
                dtype=np.int64,
                count=m,
            )
            z = self._centres[self._sub_cat[subs]] + self._sub_off[subs]
            z += self._point_spread * rng.standard_normal((m, self.latent_dim), dtype=np.float32)
            x = z @ self._mix
            x += self._mean
            x += self._noise * rng.standard_normal((m, self.dim), dtype=np.float32)
            np.maximum(x, 0.0, out=x)
            out[lo : lo + m] = x
        return out


def make_dataset(
    n: int, dim: int, n_queries: int = 300, *, seed: int = 0, **model_kw: object
) -> tuple[np.ndarray, np.ndarray]:
    """Base rows and held-out queries from one seeded model (both float16)."""
    model = SyntheticFeatures(dim, seed=seed, **model_kw)
    return model.sample(n, seed + 1), model.sample(n_queries, seed + 2)


class BroadClusters:
    """Broad, overlapping clusters in a low-rank latent space, the harder kind of library.

        z = centre[c] + cluster_spread * N(0, I_rank)            c ~ cluster weights
        x = relu(offset + z @ A + noise * N(0, I_dim))           A: (rank, dim) Gaussian / sqrt(rank)

    `noise` comparable to the cluster spread makes clusters overlap; `offset` scales a shared,
    uneven positive per-dimension mean (pooled ReLU features have one), which sets the mean
    cosine between unrelated rows; `size_sigma` > 0 draws cluster weights from a lognormal
    (heavy-tailed cluster sizes). Rows and queries from one instance share the clusters.
    """

    def __init__(
        self,
        dim: int,
        *,
        seed: int = 0,
        rank: int = 64,
        n_clusters: int = 300,
        centre_spread: float = 1.0,
        cluster_spread: float = 1.0,
        noise: float = 0.5,
        offset: float = 0.6,
        size_sigma: float = 0.0,
        relu: bool = True,
    ):
        self.dim, self.rank, self.relu = dim, rank, relu
        rng = np.random.default_rng(seed)
        self._centres = (centre_spread * rng.standard_normal((n_clusters, rank))).astype(np.float32)
        w = rng.lognormal(0.0, size_sigma, n_clusters) if size_sigma > 0 else np.ones(n_clusters)
        self._p = w / w.sum()
        self._spread = float(cluster_spread)
        self._noise = float(noise)
        self._mix = (rng.standard_normal((rank, dim)) / np.sqrt(rank)).astype(np.float32)
        self._offset = (offset * rng.gamma(2.0, 0.5, dim)).astype(np.float32)

    def sample(self, n: int, seed: int, *, chunk: int = 8192) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float16)
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            c = rng.choice(len(self._p), size=m, p=self._p)
            z = self._centres[c] + self._spread * rng.standard_normal(
                (m, self.rank), dtype=np.float32
            )
            x = z @ self._mix
            x += self._offset
            x += self._noise * rng.standard_normal((m, self.dim), dtype=np.float32)
            if self.relu:
                np.maximum(x, 0.0, out=x)
            out[lo : lo + m] = x
        return out


class FittedFeatures:
    """Vectors whose neighbour statistics are fitted to a set of real descriptors.

    From the real rows (L2-normalised): their mean, the top `rank` principal directions with
    their variances, and the residual variance. A generated row is an anchor (one real row's
    principal coordinates, shrunk towards the mean by `c`) plus Gaussian spread with the real
    principal variances times sqrt(1 - c**2), plus isotropic residual noise, so the variance
    spectrum matches the real one for every `c`. `c` is the one fitted parameter: `fit()`
    picks the value whose relative contrast and intrinsic dimension (at the real set's own
    size) come closest to the real ones. Rows are then L2-normalised like real descriptors.
    """

    def __init__(self, real: np.ndarray, *, rank: int = 256, c: float = 0.7, seed: int = 0):
        x = _unit(np.asarray(real, dtype=np.float32))
        self.dim = x.shape[1]
        self._mean = x.mean(axis=0)
        xc = x - self._mean
        r = int(min(rank, len(x) - 1, self.dim))
        _, sv, vt = np.linalg.svd(xc, full_matrices=False)
        lam = sv**2 / len(x)
        self._basis = vt[:r].astype(np.float32)
        self._scale = np.sqrt(lam[:r]).astype(np.float32)
        total = float((xc**2).sum() / len(x))
        self._res_sd = float(np.sqrt(max(total - lam[:r].sum(), 0.0) / max(self.dim - r, 1)))
        self._anchors = (xc @ self._basis.T).astype(np.float32)  # (n_real, r)
        self.rank = r
        self.c = float(c)
        self.seed = seed

    def sample(self, n: int, seed: int, *, chunk: int = 8192) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float16)
        s = float(np.sqrt(max(1.0 - self.c**2, 0.0)))
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            a = self._anchors[rng.integers(0, len(self._anchors), m)]
            z = self.c * a + s * self._scale * rng.standard_normal((m, self.rank), np.float32)
            x = z @ self._basis + self._mean
            x += self._res_sd * rng.standard_normal((m, self.dim), dtype=np.float32)
            out[lo : lo + m] = _unit(x)
        return out

    @classmethod
    def fit(cls, real: np.ndarray, *, rank: int = 256, seed: int = 0, grid=None):
        """The instance whose statistics at the real set's size best match the real ones;
        returns (model, real_stats, generated_stats)."""
        real = _unit(np.asarray(real, dtype=np.float32))
        target = neighbour_stats(real, seed=seed)
        best = None
        for c in grid or (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95):
            model = cls(real, rank=rank, c=c, seed=seed)
            st = neighbour_stats(model.sample(len(real), seed + 1), seed=seed)
            err = abs(np.log(st["rc10"] - 1) - np.log(target["rc10"] - 1)) + abs(
                np.log(st["lid20"] / target["lid20"])
            )
            if best is None or err < best[0]:
                best = (err, model, st)
        return best[1], target, best[2]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    return x / n


def neighbour_stats(
    rows: np.ndarray, n_queries: int = 500, *, seed: int = 0, chunk: int = 4096
) -> dict[str, float]:
    """How hard a set is for nearest-neighbour search, over unit-normalised rows:

    * ``mean_cos``: mean cosine between a query row and all other rows;
    * ``rc10``: relative contrast, mean Euclidean distance / distance to the 10th neighbour
      (per query, then averaged; closer to 1 is harder);
    * ``lid20``: local intrinsic dimension, Levina-Bickel MLE from the 20 nearest neighbours
      (per query, then averaged; higher is harder).

    Queries are `n_queries` rows of the set itself (excluded from their own neighbours).
    """
    n = len(rows)
    rng = np.random.default_rng(seed)
    qi = np.sort(rng.choice(n, min(n_queries, n), replace=False))
    q = _unit(np.asarray(rows[qi], dtype=np.float32))
    nq = len(q)
    best = np.full((nq, 21), -np.inf, np.float32)  # top cosines
    cos_sum = np.zeros(nq, np.float64)
    dist_sum = np.zeros(nq, np.float64)
    for lo in range(0, n, chunk):
        blk = _unit(np.asarray(rows[lo : lo + chunk], dtype=np.float32))
        s = q @ blk.T
        hit = (qi >= lo) & (qi < lo + len(blk))
        s[np.flatnonzero(hit), qi[hit] - lo] = np.nan
        ok = ~np.isnan(s)
        cos_sum += np.where(ok, s, 0).sum(axis=1)
        dist_sum += np.sqrt(np.maximum(2 - 2 * np.where(ok, s, 1), 0)).sum(axis=1)
        s = np.where(ok, s, -np.inf)
        allv = np.concatenate([best, s], axis=1)
        best = -np.sort(-allv, axis=1)[:, :21]
    d = np.sqrt(np.maximum(2 - 2 * best[:, :20].astype(np.float64), 1e-12))
    mean_dist = dist_sum / (n - 1)
    lid = -1.0 / np.mean(np.log(d[:, :-1] / d[:, -1:]), axis=1)
    return {
        "mean_cos": float(np.mean(cos_sum / (n - 1))),
        "rc10": float(np.mean(mean_dist / d[:, 9])),
        "lid20": float(np.mean(lid)),
    }

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

"""Search in centred space: cosine after subtracting the library's mean descriptor.

Pooled CNN features share a large positive component (every descriptor leans the same
way), so raw cosine is dominated by it. Subtracting the library's mean before the cosine
adds about 3 mAP points to every pooling on the flower photos (benchmarks/descriptors.py).
The stored vectors stay raw; the index and every query see `Centre.apply(x)` =
normalise(x - mean). The mean is the library's own, estimated from the vector store when
the index is built and saved beside it (`index/centre.npz`, versioned, written atomically);
its tag is part of the index's model id, so an index built around another mean is never
loaded with this one. It is re-estimated (and the index rebuilt) when the library has
doubled or halved since.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgfinder.atomic import atomic_write_npz
from imgfinder.core.index._kernels import f16_to_f32

log = logging.getLogger(__name__)

CENTRE_FORMAT = "imgfinder-centre"
CENTRE_VERSION = 1
MIN_VECTORS = 16  # below this a mean says little: search stays raw until the library grows
SAMPLE = 50_000  # the mean of this many evenly spaced vectors is plenty


@dataclass(frozen=True)
class Centre:
    mean: np.ndarray  # (D,) float32
    count: int  # library size when estimated
    model_id: str  # the stored vectors' model id

    @property
    def tag(self) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.mean, np.float32).tobytes())
        return f"c-{h.hexdigest()[:10]}"

    def offset(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) unit vectors (float16 or float32) -> vectors minus the mean, float32, not
        normalised: the direction search uses, for callers that normalise anyway (the index's
        exact re-rank)."""
        x = np.atleast_2d(vectors)
        if x.dtype == np.float16:  # the store's rows: numpy's own float16 cast is ~5x slower
            y = f16_to_f32(x)
            return np.subtract(y, self.mean, out=y)
        return np.subtract(x, self.mean, dtype=np.float32)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) or (D,) unit vectors -> centred unit vectors, float32."""
        single = np.ndim(vectors) == 1
        y = self.offset(vectors)
        norms = np.sqrt(np.einsum("ij,ij->i", y, y))
        y /= np.maximum(norms, 1e-12)[:, None]
        return y[0] if single else y

    def stale(self, count: int) -> bool:
        """True once the library has doubled or halved since the mean was estimated."""
        return count >= 2 * self.count or 2 * count <= self.count


def estimate(
    get: Callable[[np.ndarray], np.ndarray], ids: np.ndarray, model_id: str, chunk: int = 8192
) -> Centre | None:
    """The mean of the vectors of `ids` (an evenly spaced sample of at most SAMPLE)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < MIN_VECTORS:
        return None
    sample = ids[:: max(1, len(ids) // SAMPLE)]
    total = None
    for lo in range(0, len(sample), chunk):
        part = np.asarray(get(sample[lo : lo + chunk]), dtype=np.float64).sum(axis=0)
        total = part if total is None else total + part
    mean = (total / len(sample)).astype(np.float32)
    return Centre(mean, len(ids), model_id)


def save_centre(centre: Centre, path: str | os.PathLike) -> Path:
    return atomic_write_npz(
        path,
        format=np.array(CENTRE_FORMAT),
        version=np.array(CENTRE_VERSION),
        model_id=np.array(centre.model_id),
        count=np.array(centre.count),
        mean=centre.mean.astype(np.float32),
    )


def load_centre(path: str | os.PathLike, model_id: str, dim: int) -> Centre | None:
    """The saved mean, or None when missing, damaged, or made for another model."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != CENTRE_FORMAT or int(z["version"]) != CENTRE_VERSION:
                log.warning("%s is not a centre file of this version; re-estimating", path)
                return None
            centre = Centre(np.asarray(z["mean"], np.float32), int(z["count"]), str(z["model_id"]))
    except FileNotFoundError:
        return None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("cannot read %s (%s); re-estimating the library mean", path, exc)
        return None
    if centre.model_id != model_id or centre.mean.shape != (dim,):
        return None
    if not np.all(np.isfinite(centre.mean)):
        log.warning("%s holds non-finite values; re-estimating", path)
        return None
    return centre

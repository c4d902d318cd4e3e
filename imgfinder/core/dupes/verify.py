"""Pixel-level check of "same photo" candidates: best aligned detail correlation, crops searched.

The DCT signature finds candidates but keeps only low frequencies, so a re-take of the same
scene (a burst) and a slightly cropped copy can score alike. This check decodes both photos
small, lines them up with the orientation the signature found, and correlates their *detail*
layers (grey minus a Gaussian blur: edges and texture, which a re-take moves and a copy keeps)
while searching the crop of either photo over a few scales and positions (a 5% crop is a ~5%
zoom plus a shift once both are squashed to a square). Copies score ~0.85-1, re-takes and
different photos well below. It costs two small decodes per photo and ~1 ms per pair, so it
runs only on pairs whose signature is already close, and results are cached by content hash.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

from imgfinder.core import imagesig as signature

log = logging.getLogger(__name__)

VERSION = 1  # bump when any constant below changes: cached scores are recomputed
SIZE = 64  # detail layers are compared at SIZE x SIZE
WORK = 2 * SIZE  # photos are kept at WORK x WORK grey so crops are resampled, not upsampled
SCALES = (0.97, 0.94, 0.91)  # crop side as a fraction of the photo (1.0 is always tried)
BLUR_SIGMA = 2.0


@functools.lru_cache(maxsize=2)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """n x n Gaussian blur with mirrored edges, so blur(x) = G @ x @ G.T."""
    radius = int(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    g = np.zeros((n, n), np.float64)
    for i in range(n):
        for off, w in zip(range(-radius, radius + 1), k):
            j = i + off
            j = -j - 1 if j < 0 else (2 * n - j - 1 if j >= n else j)
            g[i, j] += w
    return g.astype(np.float32)


def detail(x: np.ndarray) -> np.ndarray:
    """(..., SIZE, SIZE) grey -> flattened zero-mean unit-norm detail layers (..., SIZE*SIZE)."""
    g = _blur_matrix(SIZE, BLUR_SIGMA)
    d = x - g @ x @ g.T
    d = d.reshape(*x.shape[:-2], -1)
    d = d - d.mean(axis=-1, keepdims=True)
    n = np.linalg.norm(d, axis=-1, keepdims=True)
    return d / np.maximum(n, 1e-6)


def _crop_windows() -> list[tuple[int, int, int, int]]:
    boxes = []
    for s in SCALES:
        side = int(round(WORK * s))
        offsets = sorted({0, (WORK - side) // 2, WORK - side})
        boxes += [(x, y, x + side, y + side) for y in offsets for x in offsets]
    return boxes


_WINDOWS = _crop_windows()


def views(work: np.ndarray) -> np.ndarray:
    """Detail layers of the whole photo (row 0) and of every searched crop window."""
    img = Image.fromarray(np.ascontiguousarray(work, dtype=np.float32), "F")
    out = [np.asarray(img.resize((SIZE, SIZE), Image.Resampling.BOX), np.float32)]
    for box in _WINDOWS:
        out.append(np.asarray(img.resize((SIZE, SIZE), Image.Resampling.BILINEAR, box), np.float32))
    return detail(np.stack(out))


def aligned_score(work_a: np.ndarray, work_b: np.ndarray, orientation: int) -> float:
    """Best correlation of one photo's detail against crops of the other, in both directions."""
    va = views(work_a)
    vb = views(np.ascontiguousarray(signature.orient(work_b, orientation)))
    return float(max((vb @ va[0]).max(), (va @ vb[0]).max()))


def load_work(path: str) -> np.ndarray:
    """Decode a file (upright, sRGB) into the WORK x WORK grey array the check uses."""
    from imgfinder.core import decode  # noqa: PLC0415

    return signature.grey_square(decode.open_image(path, min_size=WORK), WORK).astype(np.float32)


class Verifier:
    """Scores pairs of files; decoded photos are kept in a small LRU shared by worker threads."""

    def __init__(self, cache_items: int = 512):
        self.cache_items = cache_items
        self._cache: OrderedDict[str, np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0

    def _work(self, path: str) -> np.ndarray | None:
        with self._lock:
            if path in self._cache:
                self._cache.move_to_end(path)
                return self._cache[path]
        try:
            arr: np.ndarray | None = load_work(path)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is simply not verified
            log.info("cannot verify %s: %s", path, exc)
            arr = None
        with self._lock:
            self.decoded += 1
            self._cache[path] = arr
            while len(self._cache) > self.cache_items:
                self._cache.popitem(last=False)
        return arr

    def __call__(self, path_a: str, path_b: str, orientation: int) -> float:
        """Aligned detail correlation in [-1, 1]; NaN when either file cannot be decoded."""
        a, b = self._work(path_a), self._work(path_b)
        if a is None or b is None:
            return float("nan")
        return aligned_score(a, b, orientation)

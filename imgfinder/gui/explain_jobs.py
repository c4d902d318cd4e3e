"""The work behind the explanation views, off the GUI thread: decode, activations, heat layers.

Only arrays, PIL images and QImages come out of here (QImage is safe in any thread); the
views make pixmaps on the GUI thread. Activations are kept in a small shared LRU
(`ActivationCache`), so the query is computed once per search and the match view can
prefetch the top results before they are clicked. Every job runs on one shared
single-thread pool (`explain_pool`), through the GUI's job helper (`gui/jobs.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from PySide6.QtCore import QThreadPool
from PySide6.QtGui import QImage

from imgfinder.core import colormap, explain
from imgfinder.core.explain import Activations, MatchExplanation
from imgfinder.errors import ImgfinderError
from imgfinder.gui.items import pil_to_qimage, qimage_to_pil

DISPLAY_MAX_SIDE = 1024  # photos are shown (and exported) at most this large
HEAT_MAX_SIDE = 384  # heat layers are smooth: built small, scaled up by the view

ExtractorSource = Any  # an Extractor, or a zero-argument callable returning one (lazy)


def resolve_source(source: Any) -> Any:
    """Turn a callable or QImage source into something the decoder opens (worker side)."""
    if callable(source) and not isinstance(source, (str, bytes, os.PathLike, Image.Image)):
        source = source()
    if isinstance(source, QImage):
        try:
            source = qimage_to_pil(source)
        except ValueError:
            raise ImgfinderError("the query image is empty") from None
    return source


def source_key(source: Any) -> str:
    """Cache identity of an image source: path + size + mtime, or a hash of the bytes/pixels."""
    if isinstance(source, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(source))
        try:
            st = os.stat(path)
        except OSError:
            return f"path:{path}"
        return f"path:{path}|{st.st_size}|{st.st_mtime_ns}"
    h = hashlib.blake2b(digest_size=16)
    if isinstance(source, Image.Image):
        h.update(f"{source.mode}{source.size}".encode())
        h.update(source.tobytes())
        return f"pixels:{h.hexdigest()}"
    h.update(bytes(source))
    return f"bytes:{h.hexdigest()}"


@dataclass(eq=False)
class PreparedImage:
    """One image ready to show: its activations and its display-sized upright photo."""

    key: str
    act: Activations
    photo: Image.Image
    image: QImage
    label: str = ""


class ActivationCache:
    """Thread-safe LRU of `PreparedImage` images keyed by (model id, source key)."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], PreparedImage] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> PreparedImage | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, str], item: PreparedImage) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


shared_cache = ActivationCache()  # one per process: the two views share the query
_pool: QThreadPool | None = None


def explain_pool() -> QThreadPool:
    """One worker thread for all explanation jobs: they queue instead of fighting for cores."""
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(1)
        _pool.setObjectName("explain")
    return _pool


class ExplainModel:
    """How a worker reaches the extractor: lazily, and under the caller's lock if it gave one;
    `mean` gives the library mean the search centres on (None: raw cosine)."""

    def __init__(self, extractor: ExtractorSource, lock: Any = None, mean=None):
        self._get = extractor if callable(extractor) else (lambda: extractor)
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self._mean = mean

    def extractor(self):
        return self._get()

    def mean(self):
        return self._mean() if self._mean is not None else None


def prepare(
    model: ExplainModel, cache: ActivationCache, source: Any, key: str | None, label: str
) -> PreparedImage:
    """Worker: activations + display photo for one source, from the cache when possible.

    `source` is anything the decoder opens (path, bytes, PIL image), a QImage, or a
    zero-argument callable returning one of those (called here, off the GUI thread).
    """
    with model.lock:  # a lazy `library.extractor` must not be created twice
        ex = model.extractor()
    source = resolve_source(source)
    key = key or source_key(source)
    ck = (ex.model_id, key)
    hit = cache.get(ck)
    if hit is not None:
        return hit if not label or label == hit.label else dataclasses.replace(hit, label=label)
    with model.lock:
        act = explain.activations(ex, source)
    photo = explain.load_photo(source, DISPLAY_MAX_SIDE)
    item = PreparedImage(key, act, photo, pil_to_qimage(photo), label or act.label)
    cache.put(ck, item)
    return item


def _layer_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    s = min(1.0, HEAT_MAX_SIDE / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))


def heat_layer(hmap: np.ndarray, photo_size: tuple[int, int], cmap: str, vmax: float) -> QImage:
    """The coloured layer for one map (small; the view stretches it over the photo)."""
    signed = colormap.is_signed(hmap)
    return pil_to_qimage(colormap.heat_image(hmap, _layer_size(photo_size), cmap, vmax, signed))


@dataclass(eq=False)
class QueryExplained:
    """Worker answer for the query panel: attention maps and their layers for every branch."""

    query: PreparedImage
    maps: dict[str, np.ndarray]
    layers: dict[str, QImage]


@dataclass(eq=False)
class MatchExplained:
    """Worker answer for the match view: explanations and layers for every branch."""

    query: PreparedImage
    result: PreparedImage
    explanations: dict[str, MatchExplanation]
    query_layers: dict[str, QImage] = field(default_factory=dict)
    result_layers: dict[str, QImage] = field(default_factory=dict)


def explain_query(
    model: ExplainModel, cache: ActivationCache, source: Any, key: str | None, label: str, cmap: str
) -> QueryExplained:
    q = prepare(model, cache, source, key, label)
    maps = explain.attention_maps(q.act)
    layers = {b: heat_layer(m, q.photo.size, cmap, colormap.peak(m)) for b, m in maps.items()}
    return QueryExplained(q, maps, layers)


def explain_match(
    model: ExplainModel, cache: ActivationCache, query: tuple, result: tuple, cmap: str
) -> MatchExplained:
    q = prepare(model, cache, *query)
    r = prepare(model, cache, *result)
    out = MatchExplained(q, r, explain.match_all(q.act, r.act, model.mean()))
    for b, e in out.explanations.items():
        vmax = colormap.peak(e.query_map, e.result_map)  # one scale: the two sides compare
        out.query_layers[b] = heat_layer(e.query_map, q.photo.size, cmap, vmax)
        out.result_layers[b] = heat_layer(e.result_map, r.photo.size, cmap, vmax)
    return out


class Generation:
    """A counter the GUI bumps and workers read: stale requests are skipped unstarted."""

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value

    def current(self, n: int):
        """A check for `Jobs.submit(current=...)`: request `n` is still the latest."""
        return lambda: self.value == n

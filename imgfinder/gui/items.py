"""Plain data passed between the GUI thread and its workers: queries, requests, result items."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

from imgfinder.core.photometa import PhotoMeta
from imgfinder.core.types import Hit


@dataclass(frozen=True)
class ResultItem:
    """A search hit plus the catalog facts the grid and the details panel show."""

    hit: Hit
    size: int = 0
    mtime_ns: int = 0
    hash: str | None = None
    width: int | None = None
    height: int | None = None
    meta: PhotoMeta | None = None  # capture date, camera, lens, exposure, GPS (catalog)
    decode_source: str | None = None  # how the model saw it: "full", "raw-preview", ...

    @property
    def path(self) -> str:
        return self.hit.path

    @property
    def score(self) -> float:
        return self.hit.score

    def identity(self) -> str:
        """What a thumbnail depends on: the content hash, else path + size + mtime."""
        return self.hash or f"{self.path}|{self.size}|{self.mtime_ns}"


def thumb_key(identity: str, size: int) -> str:
    """Cache key of a thumbnail: stable, file-name safe."""
    return f"{hashlib.sha1(identity.encode('utf-8', 'surrogateescape')).hexdigest()}-{size}"


@dataclass(eq=False)
class Query:
    """Something to search with: a file, encoded image bytes or a decoded QImage."""

    label: str
    path: str | None = None
    data: bytes | None = None
    image: QImage | None = None
    # Filled in by the GUI from a SearchResult, so back/forward and changing k skip the model.
    vector: np.ndarray | None = None
    model_id: str | None = None
    preview: QImage | None = None

    def source(self):
        """What the core's decoder accepts (call in a worker: it may convert pixels)."""
        if self.path is not None:
            return self.path
        if self.data is not None:
            return self.data
        if self.image is not None:
            return qimage_to_pil(self.image)
        raise ValueError("empty query")


@dataclass
class SearchRequest:
    id: int
    lib: object  # imgfinder.core.library.Library
    query: Query
    k: int
    want_preview: bool = True
    raw_pairs_as_one: bool = False  # Settings: a RAW+JPEG pair shows as one result
    rerank: str = ""  # Settings: re-ranking of the top results (core/rerank.py names)


@dataclass
class SearchResult:
    id: int
    query: Query
    items: list[ResultItem]
    vector: np.ndarray
    model_id: str
    seconds: float


@dataclass
class ModelInfo:
    """What the worker learnt when loading the model (for the status bar and re-index offers)."""

    model_id: str
    device: str
    weights: str
    current: int  # images with vectors of this model
    stale: int  # images with vectors of another model
    other_models: dict[str, int] = field(default_factory=dict)


def qimage_to_pil(image: QImage) -> Image.Image:
    """Copy a QImage's pixels into a PIL RGBA image (safe in any thread)."""
    img = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    if w == 0 or h == 0:
        raise ValueError("empty image")
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h)
    arr = buf.reshape(h, bpl)[:, : w * 4].reshape(h, w, 4).copy()
    return Image.fromarray(arr, "RGBA")


def pil_to_qimage(img: Image.Image) -> QImage:
    """An RGB PIL image as a QImage that owns its pixels."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    data = rgb.tobytes()
    q = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888)
    return q.copy()

"""Thumbnails: decoded in a thread pool, cached on disk by content and size, LRU of pixmaps."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

from imgfinder import paths
from imgfinder.core import decode
from imgfinder.errors import DecodeError
from imgfinder.gui.items import pil_to_qimage
from imgfinder.gui.jobs import Jobs

log = logging.getLogger(__name__)

BUCKETS = (128, 192, 256, 384, 512)  # decoded sizes; the view scales down to the exact size


def bucket_for(size: float) -> int:
    for b in BUCKETS:
        if size <= b:
            return b
    return BUCKETS[-1]


@dataclass(frozen=True)
class ThumbRequest:
    key: str  # thumb_key(identity, bucket): the disk and memory cache key
    path: str
    size: int


class DiskCache:
    """<cache>/thumbs/<size>/<k[:2]>/<key>.jpg; written via a temp file + rename (atomic)."""

    def __init__(self, root: Path | None = None):
        self.root = root or (paths.cache_dir() / "thumbs")

    def file(self, key: str, size: int) -> Path:
        return self.root / str(size) / key[:2] / f"{key}.jpg"

    def read(self, key: str, size: int) -> QImage | None:
        f = self.file(key, size)
        if not f.is_file():
            return None
        img = QImage(str(f))
        if img.isNull():  # a damaged cache entry: drop it and decode again
            log.info("discarding unreadable cached thumbnail %s", f)
            f.unlink(missing_ok=True)
            return None
        return img

    def write(self, key: str, size: int, img: Image.Image) -> None:
        """No fsync: a cache file lost in a crash is just decoded again; rename keeps it whole."""
        f = self.file(key, size)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=".tmp", dir=f.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(buf.getvalue())
                os.replace(tmp, f)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("cannot write thumbnail cache %s: %s", f, exc)


def make_thumbnail(req: ThumbRequest, cache: DiskCache) -> QImage:
    """Worker side: the cached file, or decode (EXIF, ICC, modes handled by the core) and cache."""
    cached = cache.read(req.key, req.size)
    if cached is not None:
        return cached
    img = decode.open_image(req.path, min_size=req.size)
    img.thumbnail((req.size, req.size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    cache.write(req.key, req.size, img)
    return pil_to_qimage(img)


def _failure_reason(exc: BaseException) -> str:
    """Why a thumbnail could not be made, in the grid's words (logged unless a decode error)."""
    if isinstance(exc, DecodeError):
        return exc.reason
    log.warning("thumbnail failed: %s", exc)
    return str(exc)


class ThumbnailLoader(QObject):
    """GUI-thread front end: `pixmap()` never decodes; it answers from memory or queues a job.

    Pending requests form a bounded stack: the newest (the rows just scrolled into view) start
    first and the oldest are dropped when it overflows, so a fast scroll through 10,000 results
    never builds a backlog. A dropped row is simply requested again if it is painted again.
    """

    ready = Signal(str)  # key; the pixmap is in the cache now
    failed = Signal(str, str)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        threads: int = 2,
        max_pending: int = 96,
        memory_bytes: int = 96 << 20,
        cache: DiskCache | None = None,
    ):
        super().__init__(parent)
        self.cache = cache or DiskCache()
        self.jobs = Jobs(self, threads=threads, errors=_failure_reason)
        self.pool = self.jobs.pool
        self.max_inflight = threads * 2
        self.max_pending = max_pending
        self.memory_bytes = memory_bytes
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._used = 0
        self._pending: OrderedDict[str, ThumbRequest] = OrderedDict()
        self._inflight: set[str] = set()
        self._broken: dict[str, str] = {}
        self.decoded = 0  # jobs run (for tests and benchmarks)
        self.dropped = 0
        self.jobs.done.connect(self._on_done)
        self.jobs.failed.connect(self._on_failed)

    # -- GUI thread API ----------------------------------------------------------------
    def pixmap(self, req: ThumbRequest) -> QPixmap | None:
        pm = self._pixmaps.get(req.key)
        if pm is not None:
            self._pixmaps.move_to_end(req.key)
            return pm
        if req.key not in self._broken:
            self.request(req)
        return None

    def cached(self, key: str) -> QPixmap | None:
        return self._pixmaps.get(key)

    def broken(self, key: str) -> str | None:
        return self._broken.get(key)

    def request(self, req: ThumbRequest) -> None:
        if req.key in self._inflight:
            return
        self._pending[req.key] = req
        self._pending.move_to_end(req.key)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
            self.dropped += 1
        self._pump()

    def drop_pending(self) -> None:
        """Forget queued (not started) requests, e.g. when the results are replaced."""
        self.dropped += len(self._pending)
        self._pending.clear()

    def pending_count(self) -> int:
        return len(self._pending)

    def shutdown(self, timeout_ms: int = 3000) -> None:
        self._pending.clear()
        self.jobs.shutdown(timeout_ms)

    # -- internals -----------------------------------------------------------------------
    def _pump(self) -> None:
        while self._pending and len(self._inflight) < self.max_inflight:
            key, req = self._pending.popitem(last=True)  # newest first
            self._inflight.add(key)
            self.jobs.submit(lambda req=req, cache=self.cache: make_thumbnail(req, cache), key)

    @Slot(object, object)
    def _on_done(self, key: str, img: QImage) -> None:
        self._inflight.discard(key)
        self.decoded += 1
        pm = QPixmap.fromImage(img)
        old = self._pixmaps.pop(key, None)
        if old is not None:
            self._used -= _cost(old)
        self._pixmaps[key] = pm
        self._used += _cost(pm)
        while self._used > self.memory_bytes and len(self._pixmaps) > 1:
            _, evicted = self._pixmaps.popitem(last=False)
            self._used -= _cost(evicted)
        self.ready.emit(key)
        self._pump()

    @Slot(object, str)
    def _on_failed(self, key: str, reason: str) -> None:
        self._inflight.discard(key)
        self._broken[key] = reason
        self.failed.emit(key, reason)
        self.ready.emit(key)
        self._pump()


def _cost(pm: QPixmap) -> int:
    return max(1, pm.width() * pm.height() * 4)

"""Explanation views: the query's attention overlay, and query/result match maps with synced zoom.

Self-contained widgets with a small API, meant to be placed by the main window:

* `QueryExplainPanel` - the query photo with its attention heatmap (toggle, opacity, branch).
* `MatchView` - query and result side by side with their match maps, zoom and pan synced,
  the cosine and each branch's share, and "Export explanation" (PNG).

Model work (layer4 maps, decoding, colouring) runs on one shared single-thread pool; only
arrays, PIL images and QImages come back, pixmaps are made here on the GUI thread. Requests
carry a generation number so a late answer for an old selection is dropped. Activations are
kept in a small shared LRU (`ActivationCache`), so the query is computed once per search and
`MatchView.prefetch(results)` can compute the top results before they are clicked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap, QTransform
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from imgfinder.core import colormap, explain
from imgfinder.core.explain import Activations, MatchExplanation
from imgfinder.errors import ImgfinderError
from imgfinder.gui.items import qimage_to_pil

log = logging.getLogger(__name__)

DISPLAY_MAX_SIDE = 1024  # photos are shown (and exported) at most this large
HEAT_MAX_SIDE = 384  # heat layers are smooth: built small, scaled up by the view
PREFETCH_LIMIT = 8
BRANCH_ITEMS = (
    ("fused", "Fused (both)"),
    ("attention", "Attention (ECA / avg)"),
    ("global", "Global (max)"),
)

ExtractorSource = Any  # an Extractor, or a zero-argument callable returning one (lazy)


# --------------------------------------------------------------------------- worker side


def pil_to_qimage(img: Image.Image) -> QImage:
    """An RGB PIL image as a QImage owning its pixels (safe to make in any thread)."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    data = rgb.tobytes()
    return QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()


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
class Prepared:
    """One image ready to show: its activations and its display-sized upright photo."""

    key: str
    act: Activations
    photo: Image.Image
    image: QImage
    label: str = ""


class ActivationCache:
    """Thread-safe LRU of `Prepared` images keyed by (model id, source key)."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], Prepared] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Prepared | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, str], item: Prepared) -> None:
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


_shared_cache = ActivationCache()
_pool: QThreadPool | None = None


def explain_pool() -> QThreadPool:
    """One worker thread for all explanation jobs: they queue instead of fighting for cores."""
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(1)
        _pool.setObjectName("explain")
    return _pool


class _Model:
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
    model: _Model, cache: ActivationCache, source: Any, key: str | None, label: str
) -> Prepared:
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
    item = Prepared(key, act, photo, pil_to_qimage(photo), label or act.label)
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

    query: Prepared
    maps: dict[str, np.ndarray]
    layers: dict[str, QImage]


@dataclass(eq=False)
class MatchExplained:
    """Worker answer for the match view: explanations and layers for every branch."""

    query: Prepared
    result: Prepared
    explanations: dict[str, MatchExplanation]
    query_layers: dict[str, QImage] = field(default_factory=dict)
    result_layers: dict[str, QImage] = field(default_factory=dict)


def explain_query(
    model: _Model, cache: ActivationCache, source: Any, key: str | None, label: str, cmap: str
) -> QueryExplained:
    q = prepare(model, cache, source, key, label)
    maps = explain.attention_maps(q.act)
    layers = {b: heat_layer(m, q.photo.size, cmap, colormap.peak(m)) for b, m in maps.items()}
    return QueryExplained(q, maps, layers)


def explain_match(
    model: _Model, cache: ActivationCache, query: tuple, result: tuple, cmap: str
) -> MatchExplained:
    q = prepare(model, cache, *query)
    r = prepare(model, cache, *result)
    out = MatchExplained(q, r, explain.match_all(q.act, r.act, model.mean()))
    for b, e in out.explanations.items():
        vmax = colormap.peak(e.query_map, e.result_map)  # one scale: the two sides compare
        out.query_layers[b] = heat_layer(e.query_map, q.photo.size, cmap, vmax)
        out.result_layers[b] = heat_layer(e.result_map, r.photo.size, cmap, vmax)
    return out


class _JobSignals(QObject):
    done = Signal(int, object)
    failed = Signal(int, str)


class _Generation:
    """A counter the GUI bumps and workers read: stale requests are skipped unstarted."""

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        self.value += 1
        return self.value


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], object], sig: _JobSignals | None, gen: _Generation, n: int):
        super().__init__()
        self.fn, self.sig, self.gen, self.n = fn, sig, gen, n

    def run(self) -> None:
        if self.gen.value != self.n:
            return
        try:
            result = self.fn()
        except ImgfinderError as exc:
            message = str(exc)
        except Exception as exc:  # noqa: BLE001 - the worker boundary
            log.error("explanation failed", exc_info=exc)
            message = f"unexpected error: {type(exc).__name__}: {exc}"
        else:
            self._emit("done", result)
            return
        if self.sig is None:
            log.info("background explanation skipped: %s", message)
        self._emit("failed", message)

    def _emit(self, name: str, value: object) -> None:
        if self.sig is None:
            return
        try:
            getattr(self.sig, name).emit(self.n, value)
        except RuntimeError:  # the widget (and its signal object) was deleted meanwhile
            log.debug("explanation finished after its view was closed")


# --------------------------------------------------------------------------- views


class ImageView(QGraphicsView):
    """A photo with a heat layer on top; wheel zooms, drag pans, double-click fits.

    `zoom` is relative to fitting the photo in the view (1.0 = fit), so two views showing
    photos of different sizes can share it and both stay meaningful.
    """

    zoomed = Signal()
    MIN_ZOOM, MAX_ZOOM = 1.0, 40.0

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        # the window's own colour around the photo, not a grey box that dwarfs it
        self.setBackgroundBrush(self.palette().window())
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.photo_item = QGraphicsPixmapItem()
        self.photo_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.heat_item = QGraphicsPixmapItem(self.photo_item)
        self.heat_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self.photo_item)
        self.zoom = 1.0

    @property
    def fit_mode(self) -> bool:
        return self.zoom <= self.MIN_ZOOM

    def has_photo(self) -> bool:
        return not self.photo_item.pixmap().isNull()

    def set_photo(self, image: QImage | None) -> None:
        pix = QPixmap() if image is None else QPixmap.fromImage(image)
        self.photo_item.setPixmap(pix)
        self.heat_item.setPixmap(QPixmap())
        self.scene().setSceneRect(self.photo_item.sceneBoundingRect())
        self.set_zoom(1.0)

    def set_heat(self, image: QImage | None) -> None:
        pix = QPixmap() if image is None else QPixmap.fromImage(image)
        self.heat_item.setPixmap(pix)
        photo = self.photo_item.pixmap()
        if not pix.isNull() and not photo.isNull():
            sx, sy = photo.width() / pix.width(), photo.height() / pix.height()
            self.heat_item.setTransform(QTransform.fromScale(sx, sy))

    def set_heat_visible(self, visible: bool) -> None:
        self.heat_item.setVisible(visible)

    def set_heat_opacity(self, opacity: float) -> None:
        self.heat_item.setOpacity(max(0.0, min(1.0, opacity)))

    def fit_scale(self) -> float:
        """The view scale at which the whole photo just fits."""
        rect, vp = self.scene().sceneRect(), self.viewport().rect()
        if rect.isEmpty() or vp.isEmpty():
            return 1.0
        return max(min((vp.width() - 2) / rect.width(), (vp.height() - 2) / rect.height()), 1e-4)

    def set_zoom(self, zoom: float) -> None:
        """Zoom relative to fit, keeping the view's centre (fit recentres the photo)."""
        self.zoom = max(self.MIN_ZOOM, min(self.MAX_ZOOM, zoom))
        s = self.fit_scale() * self.zoom
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setTransform(QTransform.fromScale(s, s))
        self.setTransformationAnchor(anchor)
        if self.fit_mode:
            self.centerOn(self.scene().sceneRect().center())

    def zoom_by(self, factor: float) -> None:
        """Zoom around the mouse (wheel) or the centre; emits `zoomed`."""
        target = max(self.MIN_ZOOM, min(self.MAX_ZOOM, self.zoom * factor))
        if target == self.MIN_ZOOM:
            self.set_zoom(target)
        else:
            f = target / self.zoom
            self.scale(f, f)
            self.zoom = target
        self.zoomed.emit()

    def fit(self) -> None:
        self.set_zoom(1.0)
        self.zoomed.emit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        delta = event.angleDelta().y()
        if delta:
            self.zoom_by(1.0015**delta)
            event.accept()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.fit()
        event.accept()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.set_zoom(self.zoom)


class ColorLegend(QWidget):
    """The heat colours from low to high, as in the exported PNG's colour bar."""

    def __init__(self, cmap: str = "inferno", parent: QWidget | None = None):
        super().__init__(parent)
        self.low, self.high = QLabel("low"), QLabel("high")
        self.bar = QLabel()
        self.bar.setFixedSize(96, 10)
        self.bar.setToolTip("Heatmap colours: how much each area adds to the match")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        for w in (self.low, self.bar, self.high):
            lay.addWidget(w)
        self.set_cmap(cmap)

    def set_cmap(self, cmap: str, signed: bool = False) -> None:
        self.cmap, self.signed = cmap, signed
        strip = colormap.colorbar(self.bar.width(), self.bar.height(), cmap, signed)
        self.bar.setPixmap(QPixmap.fromImage(pil_to_qimage(strip)))
        self.low.setText("against" if signed else "low")
        self.high.setText("for" if signed else "high")


class HeatmapControls(QWidget):
    """Show-heatmap toggle, opacity slider and branch selector; `changed` on any edit."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None, *, vertical: bool = False):
        super().__init__(parent)
        self.toggle = QCheckBox("&Heatmap")
        self.toggle.setChecked(True)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setAccessibleName("Heatmap opacity")
        self.opacity_slider.setToolTip("Heatmap opacity")
        self.opacity_slider.setMaximumWidth(140)
        self.branch_box = QComboBox()
        self.branch_box.setAccessibleName("Descriptor branch")
        self.branch_box.setToolTip(
            "Which part of the descriptor to map: the ECA-weighted average branch, "
            "the max (global) branch, or both"
        )
        for name, text in BRANCH_ITEMS:
            self.branch_box.addItem(text, name)
        self.opacity_label = QLabel("&Opacity")
        self.opacity_label.setBuddy(self.opacity_slider)
        self.legend = ColorLegend()
        if vertical:  # a narrow column beside a photo
            col = QVBoxLayout(self)
            col.setContentsMargins(0, 0, 0, 0)
            opacity = QHBoxLayout()
            opacity.addWidget(self.opacity_label)
            opacity.addWidget(self.opacity_slider, 1)
            for part in (self.toggle, opacity, self.branch_box, self.legend):
                (col.addLayout if isinstance(part, QHBoxLayout) else col.addWidget)(part)
        else:
            lay = QHBoxLayout(self)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addWidget(self.toggle)
            lay.addWidget(self.opacity_label)
            lay.addWidget(self.opacity_slider)
            lay.addWidget(self.branch_box)
            lay.addWidget(self.legend)
            lay.addStretch(1)
        self.toggle.toggled.connect(self._toggled)
        self.opacity_slider.valueChanged.connect(self.changed)
        self.branch_box.currentIndexChanged.connect(self.changed)

    def _toggled(self, on: bool) -> None:
        self.opacity_slider.setEnabled(on)
        self.opacity_label.setEnabled(on)
        self.legend.setEnabled(on)
        self.changed.emit()

    def branch(self) -> str:
        return str(self.branch_box.currentData())

    def set_branch(self, branch: str) -> None:
        i = self.branch_box.findData(branch)
        if i < 0:
            raise ValueError(f"unknown branch {branch!r}")
        self.branch_box.setCurrentIndex(i)

    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def set_opacity(self, value: float) -> None:
        self.opacity_slider.setValue(round(max(0.0, min(1.0, value)) * 100))

    def heat_visible(self) -> bool:
        return self.toggle.isChecked()

    def set_heat_visible(self, on: bool) -> None:
        self.toggle.setChecked(on)


class _ExplainWidget(QWidget):
    """Shared plumbing: extractor access, cache, job submission with generations."""

    failed = Signal(str)
    VERTICAL_CONTROLS = False  # heatmap controls in a column (beside one photo) or a row

    def __init__(
        self, extractor: ExtractorSource = None, parent=None, *, cache=None, cmap="inferno"
    ):
        super().__init__(parent)
        self.cache = cache if cache is not None else _shared_cache
        self.cmap = cmap
        self._model: _Model | None = None
        self._pending = False
        self._gen = _Generation()
        self._sig = _JobSignals(self)
        self._sig.done.connect(self._job_done)
        self._sig.failed.connect(self._job_failed)
        self.controls = HeatmapControls(vertical=self.VERTICAL_CONTROLS)
        self.controls.changed.connect(self._apply_controls)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if extractor is not None:
            self.set_extractor(extractor)

    def set_extractor(self, extractor: ExtractorSource, lock: Any = None, mean=None) -> None:
        """The model to explain with (an Extractor or a callable returning one, e.g.
        `lambda: library.extractor`); `lock` (e.g. the search worker's) is held while it runs."""
        self._model = None if extractor is None else _Model(extractor, lock, mean)

    def _submit(self, fn: Callable[[], object], priority: int = 1) -> int:
        n = self._gen.next()
        explain_pool().start(_Job(fn, self._sig, self._gen, n), priority)
        return n

    def _job_done(self, n: int, result: object) -> None:
        if n == self._gen.value:
            self._show(result)

    def _job_failed(self, n: int, message: str) -> None:
        if n == self._gen.value:
            self._pending = False
            self.status.setText(f"<span style='color:#b00020'>{_escape(message)}</span>")
            self.failed.emit(message)

    def _show(self, result: object) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _apply_controls(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def busy(self) -> bool:
        """True while an answer for the current request is outstanding."""
        return self._pending

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Drop pending work and wait for the running job (call before the app quits)."""
        self._gen.next()
        explain_pool().waitForDone(timeout_ms)


class QueryExplainPanel(_ExplainWidget):
    """The query photo with its attention heatmap. API: `set_query(source)`, `clear()`.

    Emits `query_ready(Activations)` once computed and `failed(str)` on errors.
    """

    query_ready = Signal(object)
    VERTICAL_CONTROLS = True

    def __init__(
        self, extractor: ExtractorSource = None, parent=None, *, cache=None, cmap="inferno"
    ):
        super().__init__(extractor, parent, cache=cache, cmap=cmap)
        self.view = ImageView()
        self.current: QueryExplained | None = None
        # the photo takes the pane's height; controls, legend and numbers sit beside it
        side = QWidget()
        col = QVBoxLayout(side)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.controls)
        col.addWidget(self.status)
        col.addStretch(1)
        side.setFixedWidth(240)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.view, 1)
        lay.addWidget(side)

    def set_query(self, source: Any, *, key: str | None = None, label: str = "") -> None:
        """Explain this query: a path, bytes, PIL image, QImage, or a callable returning one
        (e.g. the main window's `Query.source`, run in the worker); `key` names it for the cache
        (default: path + size + mtime, or a hash of the bytes/pixels)."""
        if self._model is None:
            raise RuntimeError("set_extractor() first")
        model, cache, cmap = self._model, self.cache, self.cmap
        self._pending = True
        self.status.setText("Computing attention map…")
        self._submit(lambda: explain_query(model, cache, source, key, label, cmap), priority=2)

    def clear(self) -> None:
        self._gen.next()
        self._pending = False
        self.current = None
        self.view.set_photo(None)
        self.status.setText("")

    def activations(self) -> Activations | None:
        return None if self.current is None else self.current.query.act

    def _show(self, result: object) -> None:
        assert isinstance(result, QueryExplained)
        self._pending = False
        self.current = result
        self.view.set_photo(result.query.image)
        self._apply_controls()
        self.query_ready.emit(result.query.act)

    def _apply_controls(self) -> None:
        c = self.controls
        self.view.set_heat_visible(c.heat_visible())
        self.view.set_heat_opacity(c.opacity())
        if self.current is None:
            return
        branch = c.branch()
        self.view.set_heat(self.current.layers[branch])
        m = self.current.maps
        c.legend.set_cmap(self.cmap, colormap.is_signed(m[branch]))
        self.status.setText(
            f"{_escape(self.current.query.label)}: descriptor weight in the attention branch "
            f"{m['attention'].sum():.2f}, global branch {m['global'].sum():.2f}; "
            f"showing {explain.BRANCH_LABELS[branch]}"
        )


class MatchView(_ExplainWidget):
    """Query and result with their match maps, synced zoom/pan, score and export.

    API: `set_query(source)`, `set_result(source)` (or `set_pair`), `prefetch(sources)`,
    `export_png(path)`, `explanation()`. Emits `explained(MatchExplanation)` and `failed(str)`.
    """

    explained = Signal(object)

    def __init__(
        self, extractor: ExtractorSource = None, parent=None, *, cache=None, cmap="inferno"
    ):
        super().__init__(extractor, parent, cache=cache, cmap=cmap)
        self.query_view = ImageView()
        self.result_view = ImageView()
        self._syncing = False
        self._link(self.query_view, self.result_view)
        self._link(self.result_view, self.query_view)
        self.query_caption = QLabel()
        self.result_caption = QLabel()
        self.score_label = QLabel("Select a result to see where it matches the query.")
        self.score_label.setWordWrap(True)
        self.export_button = QPushButton("E&xport explanation…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self.export_explanation)
        self.current: MatchExplained | None = None
        self._query: tuple | None = None  # (source, key, label)
        self._prefetch_gen = _Generation()

        views = QHBoxLayout()
        for view, caption in (
            (self.query_view, self.query_caption),
            (self.result_view, self.result_caption),
        ):
            col = QVBoxLayout()
            col.addWidget(view, 1)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            col.addWidget(caption)
            views.addLayout(col, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.controls, 1)
        bottom.addWidget(self.export_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(views, 1)
        lay.addWidget(self.score_label)
        lay.addLayout(bottom)
        lay.addWidget(self.status)

    # -- syncing -----------------------------------------------------------------------
    def _link(self, a: ImageView, b: ImageView) -> None:
        a.zoomed.connect(lambda: self._copy_zoom(a, b))
        a.horizontalScrollBar().valueChanged.connect(lambda _=0: self._copy_scroll(a, b))
        a.verticalScrollBar().valueChanged.connect(lambda _=0: self._copy_scroll(a, b))

    def _copy_zoom(self, a: ImageView, b: ImageView) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            b.set_zoom(a.zoom)
        finally:
            self._syncing = False
        self._copy_scroll(a, b)

    def _copy_scroll(self, a: ImageView, b: ImageView) -> None:
        """Pan b to the same relative position as a (the photos may differ in width)."""
        if self._syncing:
            return
        self._syncing = True
        try:
            for sa, sb in (
                (a.horizontalScrollBar(), b.horizontalScrollBar()),
                (a.verticalScrollBar(), b.verticalScrollBar()),
            ):
                span = sa.maximum() - sa.minimum()
                frac = (sa.value() - sa.minimum()) / span if span else 0.5
                sb.setValue(round(sb.minimum() + frac * (sb.maximum() - sb.minimum())))
        finally:
            self._syncing = False

    # -- requests ----------------------------------------------------------------------
    def set_query(self, source: Any, *, key: str | None = None, label: str = "") -> None:
        """A new search: forget the shown pair and warm the cache with the query's maps."""
        self._query = (source, key, label)
        self._gen.next()
        self._pending = False
        self._clear_views("Select a result to see where it matches the query.")
        self.prefetch([])

    def set_result(self, source: Any, *, key: str | None = None, label: str = "") -> None:
        """Explain the selected result against the current query (sources as for the query)."""
        if self._model is None:
            raise RuntimeError("set_extractor() first")
        if self._query is None:
            raise RuntimeError("set_query() first")
        model, cache, cmap, query = self._model, self.cache, self.cmap, self._query
        result = (source, key, label)
        self._pending = True
        self.status.setText("Computing match maps…")
        self._submit(lambda: explain_match(model, cache, query, result, cmap), priority=2)

    def set_pair(self, query: Any, result: Any) -> None:
        if self._query is None or not _same_source(self._query[0], query):
            self.set_query(query)
        self.set_result(result)

    def prefetch(self, sources: Iterable[Any]) -> None:
        """Compute the query and these results in the background (low priority), so that
        selecting one of them is instant; a later call or a new query drops the rest."""
        if self._model is None:
            return
        model, cache, gen = self._model, self.cache, self._prefetch_gen
        n = gen.next()
        todo: list[tuple] = [self._query] if self._query is not None else []
        todo += [(s, None, "") for s in list(sources)[:PREFETCH_LIMIT]]
        for item in todo:
            job = _Job(lambda item=item: prepare(model, cache, *item), None, gen, n)
            explain_pool().start(job, 0)

    def clear(self) -> None:
        self._query = None
        self._gen.next()
        self._prefetch_gen.next()
        self._pending = False
        self._clear_views("")

    def _clear_views(self, message: str) -> None:
        self.current = None
        self.query_view.set_photo(None)
        self.result_view.set_photo(None)
        self.query_caption.setText("")
        self.result_caption.setText("")
        self.score_label.setText(message)
        self.status.setText("")
        self.export_button.setEnabled(False)

    def explanation(self, branch: str | None = None) -> MatchExplanation | None:
        """The shown pair's explanation for `branch` (default: the selected one)."""
        if self.current is None:
            return None
        return self.current.explanations[branch or self.controls.branch()]

    # -- display -----------------------------------------------------------------------
    def _show(self, result: object) -> None:
        assert isinstance(result, MatchExplained)
        self._pending = False
        self.current = result
        self.status.setText("")
        self.query_view.set_photo(result.query.image)
        self.result_view.set_photo(result.result.image)
        self.query_caption.setText(f"Query: {_escape(result.query.label)}")
        self.result_caption.setText(f"Result: {_escape(result.result.label)}")
        self.export_button.setEnabled(True)
        self._apply_controls()

    def _apply_controls(self) -> None:
        c = self.controls
        for v in (self.query_view, self.result_view):
            v.set_heat_visible(c.heat_visible())
            v.set_heat_opacity(c.opacity())
        if self.current is None:
            return
        branch = c.branch()
        self.query_view.set_heat(self.current.query_layers[branch])
        self.result_view.set_heat(self.current.result_layers[branch])
        e = self.current.explanations[branch]
        signed = colormap.is_signed(e.query_map) or colormap.is_signed(e.result_map)
        c.legend.set_cmap(self.cmap, signed)
        s, sh = e.branch_scores, e.shares()
        self.score_label.setText(
            f"<b>{e.score_name} {e.score:.4f}</b> &nbsp; attention (ECA/avg) {s['attention']:.4f} "
            f"({100 * sh['attention']:.0f}%) &nbsp; global (max) {s['global']:.4f} "
            f"({100 * sh['global']:.0f}%) &nbsp; <i>map: {explain.BRANCH_LABELS[branch]}</i>"
        )
        self.explained.emit(e)

    # -- export ------------------------------------------------------------------------
    def render(self) -> Image.Image:
        """The side-by-side picture of what is shown (branch, opacity, toggle)."""
        if self.current is None:
            raise ImgfinderError("nothing to export: select a result first")
        c, cur = self.controls, self.current
        e = cur.explanations[c.branch()]
        return explain.render_match(
            cur.query.photo,
            cur.result.photo,
            e,
            opacity=c.opacity() if c.heat_visible() else 0.0,
            cmap=self.cmap,
            caption=explain.caption_text(e, cur.query.label, cur.result.label),
        )

    def export_png(self, path: str | os.PathLike) -> Path:
        """Write the side-by-side explanation to `path` (PNG unless the extension says)."""
        return explain.save_image(self.render(), path)

    def export_explanation(self) -> Path | None:
        """Ask for a file name, then export; errors go to the status line and `failed`."""
        if self.current is None:
            return None
        q, r = Path(self.current.query.label).stem, Path(self.current.result.label).stem
        name, _ = QFileDialog.getSaveFileName(
            self, "Export explanation", f"explain-{q}-{r}.png", "PNG images (*.png)"
        )
        if not name:
            return None
        try:
            out = self.export_png(name)
        except ImgfinderError as exc:
            self._job_failed(self._gen.value, str(exc))
            return None
        self.status.setText(f"Saved {_escape(str(out))}")
        return out


def _same_source(a: Any, b: Any) -> bool:
    """Cheap identity test on the GUI thread (bytes and pixels are not compared)."""
    if a is b:
        return True
    paths = (str, os.PathLike)
    if isinstance(a, paths) and isinstance(b, paths):
        return os.fspath(a) == os.fspath(b)
    return callable(a) and callable(b) and a == b  # bound methods of the same object


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = [
    "ActivationCache",
    "HeatmapControls",
    "ImageView",
    "MatchView",
    "QueryExplainPanel",
    "explain_pool",
    "source_key",
]

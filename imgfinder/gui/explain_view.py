"""Explanation views: the query's attention overlay, and query/result match maps with synced zoom.

Self-contained widgets with a small API, meant to be placed by the main window:

* `QueryExplainPanel` - the query photo with its attention heatmap (toggle, opacity, branch).
* `MatchView` - query and result side by side with their match maps, zoom and pan synced,
  the cosine and each branch's share, and "Export explanation" (PNG).

The model work is in `explain_jobs` (run on one shared single-thread pool through the
job helper `gui/jobs.py`); only arrays, PIL images and QImages come back, pixmaps are made
here on the GUI thread. Requests carry a generation number so a late answer for an old
selection is dropped; the photo widgets are in `image_view`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from imgfinder.core import colormap, explain
from imgfinder.core.explain import Activations, MatchExplanation
from imgfinder.errors import ImgfinderError
from imgfinder.gui.explain_jobs import (
    ExplainModel,
    ExtractorSource,
    Generation,
    MatchExplained,
    QueryExplained,
    explain_match,
    explain_pool,
    explain_query,
    prepare,
    shared_cache,
)
from imgfinder.gui.image_view import HeatmapControls, ImageView
from imgfinder.gui.jobs import Jobs

log = logging.getLogger(__name__)

PREFETCH_LIMIT = 8


class _ExplainWidget(QWidget):
    """Shared plumbing: extractor access, cache, job submission with generations."""

    failed = Signal(str)
    VERTICAL_CONTROLS = False  # heatmap controls in a column (beside one photo) or a row

    def __init__(
        self, extractor: ExtractorSource = None, parent=None, *, cache=None, cmap="inferno"
    ):
        super().__init__(parent)
        self.cache = cache if cache is not None else shared_cache
        self.cmap = cmap
        self._model: ExplainModel | None = None
        self._pending = False
        self._gen = Generation()
        self._jobs = Jobs(self, pool=explain_pool())
        self._jobs.done.connect(self._job_done)
        self._jobs.failed.connect(self._job_failed)
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
        self._model = None if extractor is None else ExplainModel(extractor, lock, mean)

    def _submit(self, fn: Callable[[], object], priority: int = 1) -> int:
        n = self._gen.next()
        self._jobs.submit(fn, n, priority=priority, current=self._gen.current(n))
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
        self._prefetch_gen = Generation()
        self._prefetch_jobs = Jobs(self, pool=explain_pool())  # answers unused: only the cache
        self._prefetch_jobs.failed.connect(
            lambda _n, message: log.info("background explanation skipped: %s", message)
        )

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
            job = lambda item=item: prepare(model, cache, *item)  # noqa: E731
            self._prefetch_jobs.submit(job, n, priority=0, current=gen.current(n))

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

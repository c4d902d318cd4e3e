"""The Search tab: query panel, results grid and explanations, and the controller behind them.

`SearchPane` owns the search state (the query and its history through `SearchController`,
the shown results, what the explanation panes explain, the pending command-line image) and
the widgets of the tab; the main window places it and talks to it through its methods and
signals (`status`, `folder_dropped`, `settings_changed`, `export_ready_changed`).
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import QFileDialog, QLabel, QMenu, QSplitter, QVBoxLayout, QWidget

from imgfinder.core import decode
from imgfinder.core.explain import MatchExplanation
from imgfinder.gui import desktop
from imgfinder.gui.details_panel import DetailsPanel
from imgfinder.gui.explain_view import MatchView, QueryExplainPanel
from imgfinder.gui.image_view import HeatmapControls
from imgfinder.gui.items import Query, ResultItem, SearchResult
from imgfinder.gui.panes import UNFOLDED_MIN, FoldingTabPane
from imgfinder.gui.query import Incoming, fetch_url, from_mime
from imgfinder.gui.query_panel import QueryPanel
from imgfinder.gui.results_model import ResultsModel
from imgfinder.gui.results_view import ResultsView
from imgfinder.gui.search import SearchController
from imgfinder.gui.settings import THUMB_MAX, THUMB_MIN, GuiSettings
from imgfinder.gui.thumbnails import ThumbnailLoader, bucket_for
from imgfinder.gui.workers import TaskRunner

log = logging.getLogger(__name__)

# every format the decoder reads, camera RAW and HEIC/AVIF included
IMAGE_FILTER = (
    "Images (" + " ".join(f"*{e}" for e in sorted(decode.IMAGE_EXTENSIONS)) + ");;All files (*)"
)
OPEN_AT_ONCE = 20  # "Open"/"Show in folder" on a big selection opens this many windows at most
PREFETCH_RESULTS = 8  # match maps of the top results are computed before they are clicked
NO_MATCH_TEXT = "Select a result to see where it matches the query."
OTHER_VIEW_TEXT = "Details show the Search tab's results; a duplicate's facts are on its card."


def incoming_from_arg(arg: str) -> Incoming | None:
    """A command-line IMAGE (the .desktop entry's %U): a file, a file:// URL or a web address."""
    arg = arg.strip()
    if arg.lower().startswith(("http://", "https://")):
        return Incoming(url=arg)
    if arg.lower().startswith("file:"):
        path = QUrl(arg).toLocalFile()
    else:
        path = os.path.expanduser(arg)
    path = os.path.abspath(path) if path else ""
    if path and os.path.isfile(path):
        return Incoming(Query(label=os.path.basename(path), path=path))
    return None


def match_summary(e: MatchExplanation) -> str:
    """The compact score breakdown shown in the details panel."""
    s, sh = e.branch_scores, e.shares()
    return (
        f"<b>{e.score_name.capitalize()} {e.score:.4f}</b><br>"
        f"Attention (ECA/avg): {s['attention']:.4f} &nbsp;({100 * sh['attention']:.0f}%)<br>"
        f"Global (max): {s['global']:.4f} &nbsp;({100 * sh['global']:.0f}%)"
    )


class SearchPane(QWidget):
    """The Search tab and its controller: query → search → results grid → explanations."""

    status = Signal(str, int)  # a status-bar message and how long it shows (ms)
    folder_dropped = Signal(str)  # a folder was dropped or pasted: add it to the library
    settings_changed = Signal()  # a view setting (count, min score, thumbnail size) changed
    export_ready_changed = Signal(bool)  # "Export explanation" can be used

    def __init__(
        self,
        settings: GuiSettings,
        search_ctl: SearchController,
        tasks: TaskRunner,
        loader: ThumbnailLoader,
        details: DetailsPanel,
        *,
        offline: Callable[[], bool],
        model_loaded: Callable[[], bool],
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.settings = settings
        self.search_ctl = search_ctl
        self.tasks = tasks
        self.details = details
        self._offline = offline
        self._model_loaded = model_loaded
        self._explain_ready = False  # the explanation widgets have a model
        self._explained: tuple | None = None  # (Query, model id) the widgets explain
        self._pending_open = None  # `imgfinder gui IMAGE`: waits for the model
        self._last_result: SearchResult | None = None
        self._syncing_controls = False
        self.export_ready = False
        self.result_menu: QMenu | None = None
        self.query_panel = QueryPanel()
        self.query_panel.set_values(settings.result_count, settings.min_score)
        self.results_model = ResultsModel(loader, self)
        self.results_model.set_filter(min_score=settings.min_score)
        self.results_view = ResultsView()
        self.results_view.setModel(self.results_model)
        self.explain_pane = self._build_explain_pane()
        self.match_summary = QLabel(NO_MATCH_TEXT)
        self.match_summary.setWordWrap(True)
        self.match_summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.match_section = details.add_section("Why it matches", self.match_summary)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setObjectName("search-split")
        self.split.addWidget(self.results_view)
        self.split.addWidget(self.explain_pane)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.split.setCollapsible(0, False)
        self.split.setCollapsible(1, False)  # it folds to its tab bar instead
        self.split.setSizes([440, 340])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.query_panel)
        lay.addWidget(self.split, 1)
        self._wire()

    def _build_explain_pane(self) -> FoldingTabPane:
        """Below the grid: the query's attention map, and query | selected result match maps.

        Tabs rather than side by side: the match view needs the width for its two photos, and
        the window must still fit a 1280-pixel screen next to the library and details docks.
        The pane folds to its tab bar (click the open tab) so the grid gets the height; on a
        short screen it starts folded (see initial_layout).
        """
        self.query_explain = QueryExplainPanel()
        self.match_view = MatchView()
        for w in (self.query_explain, self.match_view):
            w.layout().setContentsMargins(6, 6, 6, 4)
            w.status.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            w.controls.opacity_slider.setMinimumWidth(72)  # not squeezed to a stub when narrow
        self.query_explain.status.setText("Search with a photo to see where its descriptor looks.")
        pane = FoldingTabPane()
        pane.setObjectName("explain-tabs")
        pane.addTab(self.query_explain, "Query attention")
        pane.addTab(self.match_view, "Why it matches")
        pane.setTabToolTip(0, "Where the query's descriptor looks (its attention map)")
        pane.setTabToolTip(1, "The query and the selected result with their match maps")
        return pane

    def _wire(self) -> None:
        qp = self.query_panel
        qp.incoming.connect(self.handle_incoming)
        qp.count_changed.connect(self._count_changed)
        qp.min_score_changed.connect(self._min_score_changed)
        qp.filter_changed.connect(lambda t: self.results_model.set_filter(text=t))
        qp.view_changed.connect(self._view_options_changed)
        rv = self.results_view
        rv.item_activated.connect(self.search_similar)
        rv.context_requested.connect(self._result_menu)
        rv.zoom_requested.connect(self.zoom)
        rv.selectionModel().currentChanged.connect(
            lambda cur, _prev: self._result_selected(self.results_model.item(cur.row()))
        )
        self.results_model.modelReset.connect(lambda: self._result_selected(None))
        self.results_model.modelReset.connect(self.update_result_header)  # filters: the count
        self.details.search_similar.connect(self.search_similar)
        sc = self.search_ctl
        sc.results.connect(self._show_results)
        sc.failed.connect(self._search_failed)
        sc.busy_changed.connect(lambda b: qp.set_busy("Searching…" if b else qp.busy.text()))
        sc.preview_changed.connect(self._preview_arrived)
        qe, mv = self.query_explain, self.match_view
        qe.failed.connect(lambda m: self._explain_failed(qe, m))
        mv.failed.connect(lambda m: self._explain_failed(mv, m))
        mv.explained.connect(self._match_explained)
        qe.controls.changed.connect(lambda: self._sync_controls(qe.controls, mv.controls))
        mv.controls.changed.connect(lambda: self._sync_controls(mv.controls, qe.controls))

    def initial_layout(self, saved: bool) -> None:
        """First start (`saved` False): the grid gets 3 rows of thumbnails; the explanations
        what is left, or they start folded to their tab bar when that is too little."""
        if saved:
            return
        split = self.split
        total = sum(split.sizes())
        grid = 3 * self.results_view.gridSize().height() + 2 * self.results_view.frameWidth() + 8
        room = total - grid - split.handleWidth()
        if room >= UNFOLDED_MIN:
            self.explain_pane.set_folded(False, height=room)
        else:
            self.explain_pane.set_folded(True)

    def shutdown(self) -> None:
        for w in (self.query_explain, self.match_view):  # their jobs use the library's model
            w.clear()  # drops queued requests and prefetches (shutdown() keeps prefetches)
            w.shutdown()

    """Mixed into MainWindow (which provides the panels, the controllers and `notify`)."""

    # -- queries -----------------------------------------------------------------------------
    def handle_incoming(self, found: Incoming | None) -> None:
        self._pending_open = None  # a drop or paste wins over a command-line image still waiting
        if found is None:
            self.query_panel.show_message(
                "That is not an image, an image file or an image address."
            )
        elif found.folder:
            self.folder_dropped.emit(found.folder)
        elif found.url:
            url = found.url
            self.query_panel.show_message(f"Downloading {url}…", error=False)
            offline = self._offline()
            self.tasks.run(
                lambda: fetch_url(url, offline=offline),
                lambda p: self.search_query(Query(label=url.rsplit("/", 1)[-1] or url, path=p)),
                lambda msg: self.query_panel.show_message(msg),
            )
        elif found.query is not None:
            self.search_query(found.query)

    def search_query(self, query: Query) -> None:
        self._pending_open = None
        self.query_panel.show_message("")
        self.query_panel.set_query(query)
        self.search_ctl.search(query)

    def search_similar(self, item: ResultItem | None) -> None:
        if item is not None:
            self.search_query(Query(label=os.path.basename(item.path), path=item.path))

    def search_selected(self) -> None:
        self.search_similar(self.results_view.current_item())

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Search with an image", "", IMAGE_FILTER)
        if path:
            self.search_query(Query(label=os.path.basename(path), path=path))

    def paste(self) -> None:
        found = from_mime(QGuiApplication.clipboard().mimeData(), how="pasted")
        if found is None:
            self.query_panel.show_message(
                "The clipboard holds no image, image file or image address to search with."
            )
            return
        self.handle_incoming(found)

    def go_back(self) -> None:
        q = self.search_ctl.back()
        if q is not None:
            self.query_panel.set_query(q)

    def go_forward(self) -> None:
        q = self.search_ctl.forward()
        if q is not None:
            self.query_panel.set_query(q)

    def refresh_results(self) -> None:
        self.search_ctl.rerun()

    def _show_results(self, result: SearchResult) -> None:
        selected = self.results_view.current_item()
        self.results_model.set_items(result.items)
        self.query_panel.set_folders(self.results_model.folders())
        self._explain_results(result)
        self._last_result = result
        self.update_result_header()
        n = len(result.items)
        if not n:
            self.query_panel.show_message(
                "No results: the library is empty or not indexed yet.", error=False
            )
        if selected is not None:
            for row, it in enumerate(self.results_model.items()):
                if it.path == selected.path:
                    self.results_view.setCurrentIndex(self.results_model.index(row))
                    break

    def result_header(self) -> str:
        """ "60 results in 120 ms", or "1 of 60 results shown · 120 ms" when filters hide some."""
        result = getattr(self, "_last_result", None)
        if result is None:
            return ""
        n, shown = len(result.items), self.results_model.rowCount()
        ms = f"{result.seconds * 1000:.0f} ms"
        if shown == n:
            return f"{n:,} result{'s' if n != 1 else ''} in {ms}"
        return f"{shown:,} of {n:,} results shown (filtered) · {ms}"

    def update_result_header(self) -> None:
        """Called on every new answer and every filter change, so the count is what is shown."""
        if getattr(self, "_last_result", None) is not None:
            self.query_panel.set_busy(self.result_header())

    def open_on_start(self, items: Sequence[str]) -> None:
        """`imgfinder gui IMAGE...`: search for the first one (once the model is ready)."""
        items = [str(x) for x in items or () if str(x).strip()]
        if not items:
            return
        if len(items) > 1:
            log.info("searching for %s; %d more ignored", items[0], len(items) - 1)
        found = incoming_from_arg(items[0])
        if found is None:
            self.query_panel.show_message(
                f"Cannot search with {items[0]}: it is not an image file or a web address."
            )
            return
        if not self._model_loaded():  # the weights may still need a download or a file
            self._pending_open = found
            self.query_panel.show_message("Loading the model to search…", error=False)
        else:
            self.handle_incoming(found)

    def _search_failed(self, message: str) -> None:
        self.query_panel.set_busy("")
        self.query_panel.show_message(message)

    def _preview_arrived(self, query: Query) -> None:
        if query is self.search_ctl.current:
            self.query_panel.set_query(query)

    def _count_changed(self, k: int) -> None:
        self.settings.result_count = k
        self.settings_changed.emit()
        self.search_ctl.set_k(k)

    def _min_score_changed(self, v: float) -> None:
        self.settings.min_score = v
        self.settings_changed.emit()
        self.results_model.set_filter(min_score=v)

    # -- explanations ------------------------------------------------------------------------
    def model_ready(self, lib) -> None:
        """The library's model is loaded: explanations may use it; a waiting IMAGE is searched."""
        lock = self.search_ctl.worker.busy  # the model is not re-entrant: one user at a time
        for w in (self.query_explain, self.match_view):
            w.set_extractor(
                lambda lib=lib: lib.extractor, lock=lock, mean=lambda lib=lib: lib.search_mean()
            )
        self._explain_ready = True
        if self._pending_open is not None:
            found, self._pending_open = self._pending_open, None
            self.handle_incoming(found)

    def _explain_results(self, result: SearchResult) -> None:
        """A new answer: explain its query (once per query and model) and prefetch the top hits."""
        if not self._explain_ready:
            return
        q = result.query
        if self._explained != (q, result.model_id):
            self._explained = (q, result.model_id)
            self.query_explain.set_query(q.source, label=q.label)
            self.match_view.set_query(q.source, label=q.label)
            self.match_summary.setText(NO_MATCH_TEXT)
            self.explain_pane.setCurrentWidget(self.query_explain)  # nothing selected yet
        self.match_view.prefetch([it.path for it in result.items[:PREFETCH_RESULTS]])

    def _result_selected(self, item: ResultItem | None) -> None:
        self.details.set_item(item)
        mv = self.match_view
        if self._explained is not None and item is None:
            if mv.current is not None or mv.busy():  # the empty state, not a stale pair
                q = self._explained[0]
                mv.set_query(q.source, label=q.label)
            self.match_summary.setText(NO_MATCH_TEXT)
        elif self._explained is not None:
            # No cache key: the widget's own (path + size + mtime) is what prefetch() used.
            mv.set_result(item.path, label=os.path.basename(item.path))
            self.match_summary.setText("Computing match maps…")
            self.explain_pane.setCurrentWidget(mv)
        self._update_export_action()

    def set_current_view(self, shown: bool) -> None:
        """The Search tab was shown (True) or another main view was (False). The details panel
        describes search results only, so elsewhere it shows none rather than a stale one."""
        if shown:
            self.details.set_item(self.results_view.current_item())
        else:
            self.details.set_item(None, hint=OTHER_VIEW_TEXT)
        self.match_section.setVisible(shown)

    def _match_explained(self, e: MatchExplanation) -> None:
        self.match_summary.setText(match_summary(e))
        self._update_export_action()

    def _explain_failed(self, source, message: str) -> None:
        """An explanation failed: say so, and do not leave an earlier one on screen."""
        self.status.emit(f"Cannot explain: {message}", 8000)
        error = f"<span style='color:#b00020'>{html.escape(message)}</span>"
        if source is self.match_view:
            mv = self.match_view
            if mv.current is not None and self._explained is not None:
                q = self._explained[0]
                mv.set_query(q.source, label=q.label)  # clears the previous pair
                mv.score_label.setText("No match maps for this result.")
                mv.status.setText(error)
            self.match_summary.setText(f"No explanation: {html.escape(message)}")
        elif source is self.query_explain and self.query_explain.current is not None:
            self.query_explain.clear()  # the previous query's map
            self.query_explain.status.setText(error)
        self._update_export_action()

    def _sync_controls(self, src: HeatmapControls, dst: HeatmapControls) -> None:
        """Both panels show the same branch, opacity and toggle state."""
        if self._syncing_controls:
            return
        self._syncing_controls = True
        try:
            dst.set_heat_visible(src.heat_visible())
            dst.set_opacity(src.opacity())
            dst.set_branch(src.branch())
        finally:
            self._syncing_controls = False

    def _update_export_action(self) -> None:
        mv = self.match_view
        ready = self.details.item is not None and mv.current is not None and not mv.busy()
        if ready != self.export_ready:
            self.export_ready = ready
            self.export_ready_changed.emit(ready)

    def export_explanation(self) -> None:
        """File ▸ Export explanation: the side-by-side view of the selected result as a PNG."""
        self._update_export_action()
        if not self.export_ready:
            self.status.emit("Select a result and wait for its match maps.", 4000)
            return
        out = self.match_view.export_explanation()
        if out is not None:
            self.status.emit(f"Saved the explanation to {out}", 6000)

    # -- results -----------------------------------------------------------------------------
    def _result_menu(self, item: ResultItem, pos) -> None:
        menu = QMenu(self)
        n = len(self.results_view.selected_items())
        several = f" ({n} photos)" if n > 1 else ""
        menu.addAction("Search similar", lambda: self.search_similar(item))
        menu.addAction("Open" + several, self.open_selected)
        menu.addAction("Show in folder" + several, self.reveal_selected)
        menu.addAction("Copy path" + ("s" + several if n > 1 else ""), self.copy_selected_path)
        menu.popup(pos)
        self.result_menu = menu

    def copy_selected_path(self) -> None:
        """Copy the selected results' paths, one a line."""
        paths = [it.path for it in self.results_view.selected_items()]
        if not paths:
            self.status.emit("Select one or more results first.", 4000)
            return
        desktop.copy_path("\n".join(paths))
        what = paths[0] if len(paths) == 1 else f"{len(paths)} paths"
        self.status.emit(f"Copied {what}", 4000)

    def open_selected(self) -> None:
        """Open the selected results with the system's viewer (at most OPEN_AT_ONCE)."""
        items = self.results_view.selected_items()
        if not items:
            self.status.emit("Select one or more results first.", 4000)
            return
        failed = [it.path for it in items[:OPEN_AT_ONCE] if not desktop.open_path(it.path)]
        if failed:
            self.status.emit(f"No application could open {failed[0]}", 6000)
        elif len(items) > OPEN_AT_ONCE:
            self.status.emit(
                f"Opened the first {OPEN_AT_ONCE} of {len(items)} selected photos.", 6000
            )

    def reveal_selected(self) -> None:
        """Show the selected results in the file manager (each folder once)."""
        items = self.results_view.selected_items()
        if not items:
            self.status.emit("Select one or more results first.", 4000)
            return
        first_in_folder: dict[str, str] = {}
        for it in items:
            first_in_folder.setdefault(os.path.dirname(it.path), it.path)
        shown = list(first_in_folder.values())[:OPEN_AT_ONCE]
        if not all(desktop.show_in_folder(p) for p in shown):
            self.status.emit("Could not open the file manager", 6000)

    def _view_options_changed(self) -> None:
        qp = self.query_panel
        self.results_model.set_filter(folder=qp.folder(), date=qp.date_filter())
        if self.results_model.sort_key != qp.sort_key():
            self.results_model.set_sort(qp.sort_key())

    def focus_filter(self) -> None:
        self.query_panel.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.query_panel.filter_edit.selectAll()

    def delete_hint(self) -> None:
        self.status.emit(
            "imgfinder never deletes photos from the results; nothing was changed.", 6000
        )

    def zoom(self, step: int) -> None:
        self.set_thumb_size(self.settings.thumb_size + 32 * step)

    def set_thumb_size(self, px: int) -> None:
        px = max(THUMB_MIN, min(THUMB_MAX, int(px)))
        self.settings.thumb_size = px
        self.results_view.set_thumb_size(px)
        self.results_model.set_bucket(bucket_for(px * self.devicePixelRatioF()))
        self.settings_changed.emit()

"""The main window: panels, actions and signal wiring; the work happens in workers and the core."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import shiboken6
from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QIcon, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from imgfinder import paths
from imgfinder.gui.details_panel import DetailsPanel
from imgfinder.gui.dupes_view import DuplicatesView
from imgfinder.gui.explain_view import MatchView, QueryExplainPanel
from imgfinder.gui.indexing import IndexController
from imgfinder.gui.library_panel import LibraryPanel
from imgfinder.gui.panes import UNFOLDED_MIN, FoldingTabPane
from imgfinder.gui.query import clean_downloads
from imgfinder.gui.query_panel import QueryPanel
from imgfinder.gui.results_model import ResultsModel
from imgfinder.gui.results_view import ResultsView
from imgfinder.gui.search import SearchController
from imgfinder.gui.settings import GuiSettings, LaunchOptions
from imgfinder.gui.skipped_view import SkippedPanel
from imgfinder.gui.status_bar import STOPPING_TEXT, IndexProgress
from imgfinder.gui.thumbnails import ThumbnailLoader
from imgfinder.gui.train_dialog import TrainDialog
from imgfinder.gui.watcher import FolderWatcher
from imgfinder.gui.window_library import LibraryMixin
from imgfinder.gui.window_search import NO_MATCH_TEXT, SearchMixin
from imgfinder.gui.workers import TaskRunner

log = logging.getLogger(__name__)

READY_TEXT = (
    "Drop a photo on the window, paste one (Ctrl+V) or open one (Ctrl+O) to find similar photos "
    "in your library."
)
EMPTY_TEXT = (
    "Add a folder to your library (Ctrl+Shift+O), then drop a photo on the window, paste one "
    "(Ctrl+V) or open one (Ctrl+O) to find similar photos."
)
NOT_INDEXED_TEXT = (
    "Your folders are being indexed; once photos are indexed, drop a photo on the window, "
    "paste one (Ctrl+V) or open one (Ctrl+O) to find similar photos."
)
NO_WEIGHTS_TEXT = (
    "The model weights are missing, so your photos cannot be indexed or searched yet. "
    "Choose a weights file in File ▸ Settings… ▸ Model, or get them with "
    "Library ▸ Get model weights… when this computer is online."
)


def empty_grid_text(*, weights_missing: bool, folders: int, photos: int) -> str:
    """What the empty results grid says: the real next step, not always "add a folder"."""
    if weights_missing:
        return NO_WEIGHTS_TEXT
    if not folders:
        return EMPTY_TEXT
    return READY_TEXT if photos else NOT_INDEXED_TEXT


def _hex(data: QByteArray) -> str:
    return bytes(data.toHex()).decode()


def restore_splitter(split: QSplitter, saved: str | None) -> bool:
    """Apply a saved `split.saveState()` (hex); anything unusable leaves the layout as it is.

    The state is tried on a stand-in splitter first: QSplitter.restoreState() accepts a
    truncated state that starts like a real one and then sets orientation 0 and a zero-width
    handle, which would leave the real splitter broken.
    """
    if not saved:
        return False
    state = QByteArray.fromHex(saved.encode("ascii", "replace"))
    probe = QSplitter(split.orientation())
    for _ in range(split.count()):
        probe.addWidget(QWidget())
    usable = probe.restoreState(state) and probe.orientation() == split.orientation()
    probe.deleteLater()
    if not usable or not split.restoreState(state):
        log.info("ignoring the saved layout of %s", split.objectName() or "a splitter")
        return False
    return True


def unique_shortcuts(keys) -> list[QKeySequence]:
    """Key sequences without repeats or empties: a standard key (e.g. Quit) is often the same
    as the explicit one given with it ("Ctrl+Q"), and one action holding a sequence twice
    makes Qt call the shortcut ambiguous and ignore it."""
    out: list[QKeySequence] = []
    for k in keys:
        seqs = (
            QKeySequence.keyBindings(k)
            if isinstance(k, QKeySequence.StandardKey)
            else [QKeySequence(k)]
        )
        for seq in seqs:
            if not seq.isEmpty() and all(seq != o for o in out):
                out.append(seq)
    return out


def _separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.VLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line


class MainWindow(SearchMixin, LibraryMixin, QMainWindow):
    """Library panel, query panel, results grid, details panel, status bar."""

    def __init__(
        self,
        opts: LaunchOptions | None = None,
        *,
        debounce_ms: int = 1500,
        watch_budget: int | None = None,
        icon: QIcon | None = None,
    ):
        super().__init__()
        self.opts = opts or LaunchOptions()
        self.data_dir = (
            Path(self.opts.data_dir).resolve() if self.opts.data_dir else paths.data_dir()
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = GuiSettings.load(self.data_dir)
        self.auto_index = True
        self.weights_dialog = self.reindex_box = self.remove_box = self.settings_dialog = None
        self.train_dialog: TrainDialog | None = None
        self._download = None
        self._download_failed = False
        self._message_box: QMessageBox | None = None
        self._explain_ready = False  # the explanation widgets have a model
        self._explained: tuple | None = None  # (Query, model id) the widgets explain
        self._pending_open = None  # `imgfinder gui IMAGE`: waits for the model
        self._syncing_controls = False
        self.tasks = TaskRunner(2, self)
        self.loader = ThumbnailLoader(self)
        self.index_ctl = IndexController(self)
        self.search_ctl = SearchController(self)
        self.search_ctl.k = self.settings.result_count
        self.search_ctl.raw_pairs_as_one = bool(self.settings.raw_pairs_as_one)
        self.search_ctl.rerank = self.settings.rerank  # issue 18: search re-ranking
        self.watcher = FolderWatcher(
            self.tasks,
            self,
            debounce_ms=debounce_ms,
            budget=watch_budget,
            rescan_minutes=self.settings.rescan_minutes,
        )
        self.setWindowTitle("imgfinder")
        if icon is not None and not icon.isNull():
            self.setWindowIcon(icon)
        self.setAcceptDrops(True)
        self.resize(1280, 820)
        self._build_ui()
        self._build_actions()
        self._wire()
        self._restore_window_state()
        self._open_library()
        QTimer.singleShot(0, self._startup)

    # -- layout ------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.views = QTabWidget()
        self.views.setDocumentMode(True)
        self.views.setTabBarAutoHide(True)
        self.query_panel = QueryPanel()
        self.query_panel.set_values(self.settings.result_count, self.settings.min_score)
        self.results_model = ResultsModel(self.loader, self)
        self.results_model.set_filter(min_score=self.settings.min_score)
        self.results_view = ResultsView()
        self.results_view.setModel(self.results_model)
        self.results_view.empty_text = EMPTY_TEXT
        self.explain_pane = self._build_explain_pane()
        self.search_split = QSplitter(Qt.Orientation.Vertical)
        self.search_split.setObjectName("search-split")
        self.search_split.addWidget(self.results_view)
        self.search_split.addWidget(self.explain_pane)
        self.search_split.setStretchFactor(0, 3)
        self.search_split.setStretchFactor(1, 2)
        self.search_split.setCollapsible(0, False)
        self.search_split.setCollapsible(1, False)  # it folds to its tab bar instead
        self.search_split.setSizes([440, 340])
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.query_panel)
        lay.addWidget(self.search_split, 1)
        self.add_view(page, "Search")
        self.dupes_view = DuplicatesView(lambda: self.lib, self, thumbnails=self.loader)
        self.add_view(self.dupes_view, "Duplicates")
        self.setCentralWidget(self.views)

        self.library_panel = LibraryPanel()
        self.library_dock = self.add_dock("Library", self.library_panel, "left")
        self.details = DetailsPanel(self.loader)
        self.details_dock = self.add_dock("Details", self.details, "right")
        self.details.setMinimumWidth(240)
        self.match_summary = QLabel(NO_MATCH_TEXT)
        self.match_summary.setWordWrap(True)
        self.match_summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.match_section = self.details.add_section("Why it matches", self.match_summary)
        self.skipped = SkippedPanel()
        # beside Details, not under the grid: opening it must not take the thumbnails' height
        self.skipped_dock = self.add_dock("Skipped files", self.skipped, "right")
        self.tabifyDockWidget(self.details_dock, self.skipped_dock)
        self.skipped_dock.hide()

        sb = self.statusBar()
        self.index_progress = IndexProgress()
        self.skipped_button = QToolButton()
        self.skipped_button.setAutoRaise(True)
        self.skipped_button.clicked.connect(self.show_skipped)
        self.skipped_button.hide()
        self.size_label = QLabel()
        self.watch_label = QLabel()
        self.device_label = QLabel()
        self.device_label.setToolTip("Inference device")
        sb.addPermanentWidget(self.index_progress)
        sb.addPermanentWidget(self.skipped_button)
        for label in (self.watch_label, self.size_label, self.device_label):
            label.setContentsMargins(8, 0, 8, 0)
            sb.addPermanentWidget(_separator())
            sb.addPermanentWidget(label)
        self.set_thumb_size(self.settings.thumb_size)

    def _build_explain_pane(self) -> FoldingTabPane:
        """Below the grid: the query's attention map, and query | selected result match maps.

        Tabs rather than side by side: the match view needs the width for its two photos, and
        the window must still fit a 1280-pixel screen next to the library and details docks.
        The pane folds to its tab bar (click the open tab) so the grid gets the height; on a
        short screen it starts folded (see _initial_search_layout).
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

    def find_duplicates(self) -> None:
        self.views.setCurrentWidget(self.dupes_view)
        self.dupes_view.scan()

    def open_train_dialog(self, **overrides) -> TrainDialog:
        """Library ▸ Train model: one non-modal dialog; `overrides` are extra TrainConfig fields."""
        dlg = self.train_dialog
        if dlg is None:
            dlg = self.train_dialog = TrainDialog(
                lambda: self.lib, self.data_dir / "models", overrides=overrides, parent=self
            )
            dlg.use_model.connect(self.apply_settings)
        elif overrides:
            dlg.overrides = overrides
        dlg.show()
        dlg.raise_()
        dlg.activateWindow()
        return dlg

    def _update_train_action(self) -> None:
        """Training needs the model loaded, and does not start next to a running index."""
        ready = getattr(self, "model_info", None) is not None
        self.train_action.setEnabled(ready and self.index_ctl.state == "idle")

    def add_view(self, widget: QWidget, title: str) -> int:
        """Add a main view (e.g. duplicates review) as a tab; the tab bar appears with the second."""
        return self.views.addTab(widget, title)

    def add_dock(self, title: str, widget: QWidget, area: str = "right") -> QDockWidget:
        """Add a side panel; it gets a View-menu toggle when added before the menus are built."""
        areas = {
            "left": Qt.DockWidgetArea.LeftDockWidgetArea,
            "right": Qt.DockWidgetArea.RightDockWidgetArea,
            "bottom": Qt.DockWidgetArea.BottomDockWidgetArea,
        }
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
        dock.setWidget(widget)
        self.addDockWidget(areas[area], dock)
        if hasattr(self, "view_menu"):
            self.view_menu.addAction(dock.toggleViewAction())
        return dock

    # -- actions -----------------------------------------------------------------------------
    def _act(self, menu: QMenu | None, text: str, slot, *keys, tip: str = "") -> QAction:
        """An action with its shortcuts; `menu` None: a window-wide shortcut not in a menu."""
        a = QAction(text, self)
        seqs = unique_shortcuts(keys)
        if seqs:
            a.setShortcuts(seqs)
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            a.setStatusTip(tip)
        a.triggered.connect(lambda _checked=False: slot())
        if menu is None:
            self.addAction(a)
        else:
            menu.addAction(a)
        return a

    def _build_actions(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        K = QKeySequence.StandardKey
        self.open_action = self._act(m, "&Open image…", self.choose_image, K.Open)
        self.paste_action = self._act(m, "&Paste image", self.paste, K.Paste)
        self.export_action = self._act(
            m,
            "&Export explanation…",
            self.export_explanation,
            "Ctrl+E",
            tip="Save the query and the selected result with their match maps as a PNG",
        )
        self.export_action.setEnabled(False)
        m.addSeparator()
        self.add_folder_action = self._act(m, "&Add folder…", self.choose_folder, "Ctrl+Shift+O")
        self._act(m, "&Settings…", self.open_settings, K.Preferences, "Ctrl+,")
        m.addSeparator()
        self._act(m, "&Quit", self.close, K.Quit, "Ctrl+Q")

        m = mb.addMenu("&Edit")
        self._act(m, "&Copy paths", self.copy_selected_path, "Ctrl+Shift+C")
        self._act(m, "Select &all results", self.results_view.selectAll, K.SelectAll)
        self.find_action = self._act(m, "&Filter results", self.focus_filter, K.Find)
        # the Delete key explains why nothing is deleted; it is no menu entry of its own
        self.delete_action = self._act(None, "Delete", self.delete_hint, K.Delete)

        m = mb.addMenu("&Go")
        self.back_action = self._act(m, "&Back", self.go_back, "Alt+Left", K.Back)
        self.forward_action = self._act(m, "&Forward", self.go_forward, "Alt+Right", K.Forward)
        m.addSeparator()
        self._act(m, "&Search similar", self.search_selected, "Ctrl+Return")
        self._act(m, "&Open with system viewer", self.open_selected, "Shift+Return")
        self._act(m, "Show in &folder", self.reveal_selected, "Ctrl+Shift+R")
        self._act(m, "Focus &results", self.results_view.setFocus, "F6")

        m = mb.addMenu("&Library")
        m.addAction(self.add_folder_action)
        self._act(m, "&Remove folder…", self.confirm_remove_folder)
        self._act(m, "Re&scan", self.rescan, "F5")
        self._act(m, "Re-&index", self.reindex)
        m.addSeparator()
        self.pause_action = self._act(
            m, "&Pause/resume indexing", self.toggle_pause, "Ctrl+Shift+P"
        )
        self.cancel_action = self._act(m, "&Cancel indexing", self.index_ctl.cancel)
        self._act(m, "S&kipped files", self.show_skipped, "Ctrl+Shift+K")
        self.get_weights_action = self._act(
            m,
            "Get model &weights…",
            self.ask_for_weights,
            tip="Download the model weights or choose a weights file",
        )
        m.addSeparator()
        self._act(
            m,
            "Find &duplicates",
            self.find_duplicates,
            "Ctrl+Shift+D",
            tip="Scan the library for exact copies, the same photo and similar shots",
        )
        self.train_action = self._act(
            m,
            "&Train model…",
            self.open_train_dialog,
            tip="Fine-tune the model on a folder of your photos (runs in the background)",
        )

        self.view_menu = m = mb.addMenu("&View")
        self._act(m, "Zoom &in", lambda: self.zoom(1), K.ZoomIn, "Ctrl+=")
        self._act(m, "Zoom &out", lambda: self.zoom(-1), K.ZoomOut)
        self._act(m, "&Reset zoom", lambda: self.set_thumb_size(160), "Ctrl+0")
        m.addSeparator()
        for dock in (self.library_dock, self.details_dock, self.skipped_dock):
            m.addAction(dock.toggleViewAction())

        m = mb.addMenu("&Help")
        self._act(m, "&Keyboard shortcuts", self.show_shortcuts, K.HelpContents)
        self._act(m, "&About imgfinder", self.show_about)
        self.query_panel.back_button.setDefaultAction(self.back_action)
        self.query_panel.forward_button.setDefaultAction(self.forward_action)
        self._update_history_actions()

    def _wire(self) -> None:
        self.dupes_view.status_message.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.dupes_view.library_changed.connect(self.refresh_roots)
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
        self.details.message.connect(lambda m: self.statusBar().showMessage(m, 5000))
        sc = self.search_ctl
        sc.results.connect(self._show_results)
        sc.failed.connect(self._search_failed)
        sc.busy_changed.connect(lambda b: qp.set_busy("Searching…" if b else qp.busy.text()))
        sc.preview_changed.connect(self._preview_arrived)
        sc.history_changed.connect(self._update_history_actions)
        sc.model_ready.connect(self._model_ready)
        sc.model_ready.connect(self._explain_model_ready)  # after _model_ready
        sc.model_failed.connect(self._model_failed)
        qe, mv = self.query_explain, self.match_view
        for w in (qe, mv):
            w.failed.connect(self._explain_failed)
        mv.explained.connect(self._match_explained)
        qe.controls.changed.connect(lambda: self._sync_controls(qe.controls, mv.controls))
        mv.controls.changed.connect(lambda: self._sync_controls(mv.controls, qe.controls))
        ic = self.index_ctl
        ic.progress.connect(self._index_progress)
        ic.batch_done.connect(self._index_batch)
        ic.finished.connect(self._index_finished)
        ic.failed.connect(self._index_failed)
        ic.state_changed.connect(self.index_progress.set_state)
        ic.state_changed.connect(self._update_train_action)
        self.index_progress.pause_clicked.connect(ic.pause)
        self.index_progress.resume_clicked.connect(ic.resume)
        self.index_progress.cancel_clicked.connect(ic.cancel)
        lp = self.library_panel
        lp.add_clicked.connect(self.choose_folder)
        lp.remove_clicked.connect(self.confirm_remove_folder)
        lp.rescan_clicked.connect(self.rescan)
        self.skipped.count_changed.connect(self._skipped_count)
        self.watcher.changed.connect(self._auto_rescan)
        self.watcher.states_changed.connect(self._watch_states)
        self._roots_timer = QTimer(self, singleShot=True, interval=1500)
        self._roots_timer.timeout.connect(self.refresh_roots)
        self._avail_timer = QTimer(self, interval=60_000)  # notice drives coming and going
        self._avail_timer.timeout.connect(self.refresh_roots)
        self._avail_timer.start()
        # another process (`imgfinder index`, a second window) changed the library: show it
        self._elsewhere_timer = QTimer(self, interval=3000)
        self._elsewhere_timer.timeout.connect(self._poll_changed_elsewhere)
        self._elsewhere_timer.start()
        self._save_timer = QTimer(self, singleShot=True, interval=2000)
        self._save_timer.timeout.connect(self.save_settings)
        self._available: dict[str, bool] = {}

    def _startup(self) -> None:
        clean_downloads()
        self.refresh_roots()
        self.refresh_skipped()
        self.load_model()

    # -- library panel and status bar --------------------------------------------------------
    def refresh_roots(self) -> None:
        lib = self.lib
        self.tasks.run(lambda: (lib.roots(), lib.catalog.counts()), self._roots_loaded)

    def _roots_loaded(self, result) -> None:
        roots, counts = result
        self.library_panel.set_roots(roots, self.watcher.states, self.watcher.rescan_minutes)
        self.watcher.set_roots([(r.path, r.available) for r in roots])
        ok = counts.get("ok", 0)
        self.size_label.setText(f"{ok:,} photo{'s' if ok != 1 else ''} in the library")
        self._grid_counts = (len(roots), ok)
        self.update_empty_text()
        back = [r.path for r in roots if r.available and self._available.get(r.path) is False]
        self._available = {r.path: r.available for r in roots}
        if back:
            self._auto_rescan(f"{len(back)} folder(s) available again")

    def update_empty_text(self) -> None:
        folders, photos = getattr(self, "_grid_counts", (0, 0))
        missing = getattr(self, "weights_missing_now", False)
        self.results_view.empty_text = empty_grid_text(
            weights_missing=missing, folders=folders, photos=photos
        )
        self.results_view.viewport().update()

    def _watch_states(self) -> None:
        states = self.watcher.states
        polling = self.watcher.polling()
        watching = sum(s.folders for s in states.values() if s.mode == "watching")
        if polling:
            self.watch_label.setText(
                f"⚠ {len(polling)} folder(s) not watched (system limit); rescan every "
                f"{self.watcher.rescan_minutes} min"
            )
        else:
            plural = "s" if watching != 1 else ""
            self.watch_label.setText(f"Watching {watching:,} folder{plural}" if watching else "")
        roots = self.library_panel.roots
        self.library_panel.set_roots(roots, states, self.watcher.rescan_minutes)

    def _poll_changed_elsewhere(self) -> None:
        try:
            changed = self.lib.changed_elsewhere()  # PRAGMA data_version: cheap
        except Exception:  # noqa: BLE001 - a closing or broken catalog: the next action says so
            return
        if changed:
            self.refresh_roots()
            self.refresh_skipped()

    def refresh_skipped(self) -> None:
        lib = self.lib
        self.tasks.run(lambda: lib.catalog.failed(), self.skipped.set_rows)

    def _skipped_count(self, n: int) -> None:
        self.skipped_button.setText(f"{n:,} skipped")
        self.skipped_button.setToolTip("Show the files indexing could not use, and why")
        self.skipped_button.setVisible(n > 0)

    def show_skipped(self) -> None:
        self.skipped_dock.show()
        self.skipped_dock.raise_()
        self.skipped.table.setFocus()

    def toggle_pause(self) -> None:
        if self.index_ctl.state == "paused":
            self.index_ctl.resume()
        else:
            self.index_ctl.pause()

    # -- messages ----------------------------------------------------------------------------
    def notify(self, title: str, text: str) -> None:
        """One non-modal message at a time: a burst of errors updates it instead of stacking."""
        box = self._message_box
        if box is not None and box.isVisible():
            box.setInformativeText(f"(also: {title})")
            return
        box = QMessageBox(
            QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self
        )
        box.setWindowModality(Qt.WindowModality.NonModal)
        self._message_box = box
        box.show()
        log.warning("%s: %s", title, text)

    def shortcut_lines(self) -> list[str]:
        """ "Action: keys" for every menu action with a shortcut, each action once."""
        lines, seen = [], set()
        for menu in self.menuBar().findChildren(QMenu):
            for a in menu.actions():
                keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts()]
                keys = [k for k in keys if k]
                if keys and id(a) not in seen:
                    seen.add(id(a))
                    lines.append(f"{a.text().replace('&', '')}: {', '.join(keys)}")
        return lines

    def show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard shortcuts", "\n".join(self.shortcut_lines()))

    def show_about(self) -> None:
        from imgfinder import __version__

        QMessageBox.about(
            self,
            "About imgfinder",
            f"imgfinder {__version__}\nFind similar photos and duplicates in your folders.\n\n"
            f"Data folder: {self.data_dir}",
        )

    # -- state and shutdown --------------------------------------------------------------------
    def save_settings(self) -> None:
        try:
            self.settings.save(self.data_dir)
        except OSError as exc:
            log.warning("cannot save settings: %s", exc)

    def _splitters(self) -> dict[str, QSplitter]:
        """The splitters whose positions are remembered, by their settings field."""
        return {
            "search_split_state": self.search_split,
            "dupes_split_state": self.dupes_view.splitter,
        }

    def _restore_window_state(self) -> None:
        s = self.settings
        try:
            if s.window_geometry:
                self.restoreGeometry(QByteArray.fromHex(s.window_geometry.encode()))
            if s.window_state:
                self.restoreState(QByteArray.fromHex(s.window_state.encode()))
        except (ValueError, TypeError):
            log.info("ignoring saved window layout")
        for name, split in self._splitters().items():
            restore_splitter(split, getattr(s, name))
        if s.explain_folded is not None:
            self.explain_pane.set_folded(s.explain_folded)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not getattr(self, "_laid_out", False):
            self._laid_out = True
            QTimer.singleShot(0, self._initial_search_layout)

    def _initial_search_layout(self) -> None:
        """First start: the grid gets 3 rows of thumbnails; the explanations what is left, or
        they start folded to their tab bar when that is too little (e.g. 1280x800)."""
        if self.settings.explain_folded is not None or self.settings.search_split_state:
            return
        split = self.search_split
        total = sum(split.sizes())
        grid = 3 * self.results_view.gridSize().height() + 2 * self.results_view.frameWidth() + 8
        room = total - grid - split.handleWidth()
        if room >= UNFOLDED_MIN:
            self.explain_pane.set_folded(False, height=room)
        else:
            self.explain_pane.set_folded(True)

    def remember_layout(self) -> None:
        """Put the window geometry, dock layout and splitter positions into the settings."""
        s = self.settings
        s.window_geometry = _hex(self.saveGeometry())
        s.window_state = _hex(self.saveState())
        for name, split in self._splitters().items():
            setattr(s, name, _hex(split.saveState()))
        s.explain_folded = self.explain_pane.folded

    def closeEvent(self, event) -> None:  # noqa: N802
        if self._defer_close():
            event.ignore()
            return
        self.remember_layout()
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)

    def _defer_close(self) -> bool:
        """While indexing, closing first says "Stopping…" and lets the current batch end.

        The window stays responsive meanwhile and closes by itself when the index thread
        has ended (the core has then saved the store and index); True: the close waits.
        """
        if getattr(self, "_shut", False):
            return False
        if getattr(self, "_stopping", False):
            return True  # a second close while stopping: still waiting for the batch
        if not self.index_ctl.stop():
            return False
        self._stopping = True
        self.statusBar().showMessage(STOPPING_TEXT)
        self.index_ctl.stopped.connect(self._stopped_then_close)
        return True

    def _stopped_then_close(self) -> None:
        self._stopping = False
        QTimer.singleShot(0, self.close)

    def shutdown(self) -> None:
        """Cancel, quit, wait for every worker; then close the library (it stays loadable)."""
        if getattr(self, "_shut", False):
            return
        self._shut = True
        self._avail_timer.stop()
        self.watcher.shutdown()
        self.index_ctl.shutdown()
        if self.train_dialog is not None:  # cancels the run (checkpointed) and waits for it
            self.train_dialog.shutdown()
            self.train_dialog.close()
        self.dupes_view.shutdown()
        for w in (self.query_explain, self.match_view):  # their jobs use the library's model
            w.clear()  # drops queued requests and prefetches (shutdown() keeps prefetches)
            w.shutdown()
        if self._download is not None:
            thread, worker = self._download
            worker.cancel()
            thread.quit()
            thread.wait()
        if self.settings_dialog is not None and shiboken6.isValid(self.settings_dialog):
            self.settings_dialog.cancel_learning()  # a whitening still learning is not saved
        self.search_ctl.shutdown()
        self.loader.shutdown()
        self.tasks.shutdown()
        self.lib.close()
        gc.unfreeze()  # see _model_ready: let interpreter shutdown clean up as usual

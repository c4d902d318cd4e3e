"""The main window: a thin shell that places the panels and wires them to the controllers.

State lives in explicit controllers, each owning its own: `LibrarySession` (the open
library, the settings in effect, the loaded model, weights, indexing requests),
`SearchPane` (the Search tab: query, history, results, explanations), `IndexController`,
`FolderWatcher` and the `DuplicatesView`. The window builds the docks, menus and status
bar, turns the controllers' signals into what the user sees (status messages, dialogs,
questions), remembers the layout and shuts everything down in order.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import shiboken6
from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QWidget,
)

from imgfinder import paths
from imgfinder.core.types import IndexSummary, Progress, run_summary_text
from imgfinder.errors import ImgfinderError
from imgfinder.gui.details_panel import DetailsPanel
from imgfinder.gui.dupes_view import DuplicatesView
from imgfinder.gui.indexing import IndexController
from imgfinder.gui.items import ModelInfo
from imgfinder.gui.library_session import LibrarySession
from imgfinder.gui.library_view import LibraryView
from imgfinder.gui.menus import build_menus
from imgfinder.gui.query import clean_downloads, from_mime
from imgfinder.gui.query_panel import can_accept
from imgfinder.gui.search import SearchController
from imgfinder.gui.search_pane import SearchPane
from imgfinder.gui.settings import GuiSettings, LaunchOptions
from imgfinder.gui.settings_dialog import SettingsDialog
from imgfinder.gui.status_bar import STOPPING_TEXT, IndexProgress
from imgfinder.gui.thumbnails import ThumbnailLoader
from imgfinder.gui.train_dialog import TrainDialog
from imgfinder.gui.watcher import FolderWatcher
from imgfinder.gui.weights_dialog import WeightsPrompt
from imgfinder.gui.window_parts import (
    EMPTY_TEXT,
    empty_grid_text,
    restore_splitter,
    separator,
    to_hex,
)
from imgfinder.gui.workers import TaskRunner

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """Library panel, Search and Duplicates tabs, details panel, status bar."""

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
        self.reindex_box = self.remove_box = self.settings_dialog = None
        self.view_menu: QMenu | None = None  # set by build_menus
        self.train_dialog: TrainDialog | None = None
        self._message_box: QMessageBox | None = None
        self._opened_once = False
        self._laid_out = self._stopping = self._shut = False
        self.first_layout_done = False  # the first layout of the search tab has run
        self.tasks = TaskRunner(2, self)
        self.loader = ThumbnailLoader(self)
        self.index_ctl = IndexController(self)
        self.search_ctl = SearchController(self)
        self.search_ctl.k = self.settings.result_count
        self.search_ctl.raw_pairs_as_one = bool(self.settings.raw_pairs_as_one)
        self.search_ctl.rerank = self.settings.rerank  # search re-ranking (Settings)
        self.session = LibrarySession(
            self.opts, self.data_dir, self.settings, self.index_ctl, self.search_ctl, self
        )
        self.weights = WeightsPrompt(self.session, self)
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
        build_menus(self)
        self._wire()
        self._restore_window_state()
        self.session.open()
        QTimer.singleShot(0, self._startup)

    # the session's state, read-only here
    @property
    def lib(self):
        return self.session.lib

    @property
    def model_info(self) -> ModelInfo | None:
        return self.session.model_info

    @property
    def effective(self):
        return self.session.effective

    # -- layout ------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.views = QTabWidget()
        self.views.setDocumentMode(True)
        self.views.setTabBarAutoHide(True)
        self.details = DetailsPanel(self.loader)
        self.search = SearchPane(
            self.settings,
            self.search_ctl,
            self.tasks,
            self.loader,
            self.details,
            offline=lambda: self.opts.offline,
            model_loaded=lambda: self.model_info is not None,
        )
        # the tab's widgets, by the names the menus, the layout code and the tests use
        self.query_panel, self.results_view = self.search.query_panel, self.search.results_view
        self.results_model, self.search_split = self.search.results_model, self.search.split
        self.query_explain, self.match_view = self.search.query_explain, self.search.match_view
        self.explain_pane, self.match_summary = self.search.explain_pane, self.search.match_summary
        self.results_view.empty_text = EMPTY_TEXT
        self.add_view(self.search, "Search")
        self.dupes_view = DuplicatesView(lambda: self.lib, self, thumbnails=self.loader)
        self.add_view(self.dupes_view, "Duplicates")
        self.setCentralWidget(self.views)

        self.library_view = LibraryView(self.session, self.watcher, self.tasks, self)
        self.library_panel, self.skipped = self.library_view.panel, self.library_view.skipped
        self.library_dock = self.add_dock("Library", self.library_panel, "left")
        self.details_dock = self.add_dock("Details", self.details, "right")
        self.details.setMinimumWidth(240)
        # beside Details, not under the grid: opening it must not take the thumbnails' height
        self.skipped_dock = self.add_dock("Skipped files", self.skipped, "right")
        self.tabifyDockWidget(self.details_dock, self.skipped_dock)
        self.skipped_dock.hide()

        sb = self.statusBar()
        self.index_progress = IndexProgress()
        lv = self.library_view
        self.skipped_button, self.size_label = lv.skipped_button, lv.size_label
        self.watch_label = lv.watch_label
        self.device_label = QLabel()
        self.device_label.setToolTip("Inference device")
        sb.addPermanentWidget(self.index_progress)
        sb.addPermanentWidget(self.skipped_button)
        for label in (self.watch_label, self.size_label, self.device_label):
            label.setContentsMargins(8, 0, 8, 0)
            sb.addPermanentWidget(separator())
            sb.addPermanentWidget(label)
        self.search.set_thumb_size(self.settings.thumb_size)

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
        ready = self.model_info is not None
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
        if self.view_menu is not None:
            self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def _wire(self) -> None:
        status = self.statusBar()
        self.dupes_view.status_message.connect(lambda m: status.showMessage(m, 5000))
        self.dupes_view.library_changed.connect(self.refresh_roots)
        self.details.message.connect(lambda m: status.showMessage(m, 5000))
        sp = self.search
        sp.status.connect(status.showMessage)
        sp.folder_dropped.connect(self.add_folder)
        sp.settings_changed.connect(lambda: self._save_timer.start())
        sp.export_ready_changed.connect(self.export_action.setEnabled)
        self.views.currentChanged.connect(
            lambda _i: sp.set_current_view(self.views.currentWidget() is sp)
        )
        self.search_ctl.history_changed.connect(self._update_history_actions)
        se = self.session
        se.opened.connect(self._library_opened)
        se.recovered.connect(lambda text: self.notify("Library recovered", text))
        se.device_changed.connect(self.device_label.setText)
        se.model_ready.connect(self._model_ready)
        se.model_failed.connect(lambda text: self.notify("Cannot load the model", text))
        se.weights_needed.connect(self.weights.ask)
        se.reindex_needed.connect(self._offer_reindex)
        self.weights.status.connect(status.showMessage)
        self.weights.gave_up.connect(self._no_weights)
        ic = self.index_ctl
        ic.progress.connect(self._index_progress)
        ic.batch_done.connect(self._index_batch)
        ic.finished.connect(self._index_finished)
        ic.failed.connect(lambda text: self.notify("Indexing stopped", text))
        ic.state_changed.connect(self.index_progress.set_state)
        ic.state_changed.connect(self._update_train_action)
        self.index_progress.pause_clicked.connect(ic.pause)
        self.index_progress.resume_clicked.connect(ic.resume)
        self.index_progress.cancel_clicked.connect(ic.cancel)
        lp = self.library_panel
        lp.add_clicked.connect(self.choose_folder)
        lp.remove_clicked.connect(self.confirm_remove_folder)
        lp.rescan_clicked.connect(self.rescan)
        self.watcher.changed.connect(self.session.auto_rescan)
        self.library_view.counts_changed.connect(lambda _f, _p: self.update_empty_text())
        self.library_view.skipped_clicked.connect(self.show_skipped)
        self._save_timer = QTimer(self, singleShot=True, interval=2000)
        self._save_timer.timeout.connect(self.save_settings)

    def _update_history_actions(self) -> None:
        self.back_action.setEnabled(self.search_ctl.can_go_back())
        self.forward_action.setEnabled(self.search_ctl.can_go_forward())

    def open_on_start(self, items) -> None:
        """`imgfinder gui IMAGE...`: search for the first one (once the model is ready)."""
        self.search.open_on_start(items)

    # -- the library session ------------------------------------------------------------------
    def _library_opened(self, _lib) -> None:
        self._update_train_action()
        if self._opened_once:  # another library (a setting changed): what showed the old one
            self.dupes_view.reset()  # its pair list belongs to the old library
            self.refresh_roots()
        self._opened_once = True

    def _no_weights(self) -> None:
        """The weights dialog closed and there are still no weights: say what is off."""
        self.device_label.setText("no model weights")
        self.update_empty_text()

    def _model_ready(self, info: ModelInfo) -> None:
        self.update_empty_text()
        self._update_train_action()
        self.statusBar().showMessage(f"Model ready on {info.device}", 4000)
        self.search.model_ready(self.lib)

    def _offer_reindex(self, info: ModelInfo) -> None:
        self.reindex_box = self._ask(
            "Re-index the library?",
            f"{info.stale:,} photos were indexed with another model or input size. Searches use "
            f"the current model ({info.model_id}), so they must be indexed again.\n\n"
            "Re-index now? It runs in the background and can be paused.",
            self._reindex_answer,
        )

    def _ask(self, title: str, text: str, answer, *, cautious: bool = False) -> QMessageBox:
        """A window-modal Yes/No question (Yes/Cancel, Cancel the default, when `cautious`);
        `answer(yes)` runs when it closes. Returns the open box."""
        no = QMessageBox.StandardButton.Cancel if cautious else QMessageBox.StandardButton.No
        yes = QMessageBox.StandardButton.Yes
        box = QMessageBox(QMessageBox.Icon.Question, title, text, yes | no, self)
        box.setDefaultButton(no if cautious else yes)
        box.finished.connect(lambda code: answer(code == yes))
        box.open()
        return box

    def _reindex_answer(self, yes: bool) -> None:
        self.reindex_box = None
        if yes:
            self.reindex()
        else:
            self.statusBar().showMessage(
                "Automatic indexing is off until you re-index (Library ▸ Re-index).", 10000
            )

    def reindex(self) -> None:
        self.session.reindex()

    def rescan(self) -> None:
        self.session.rescan()

    @property
    def weights_dialog(self):
        return self.weights.dialog

    def ask_for_weights(self) -> None:
        self.weights.ask_again()

    # -- folders and indexing ----------------------------------------------------------------
    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder to the library")
        if path:
            self.add_folder(path)

    def add_folder(self, path: str) -> None:
        """Add a library folder and start indexing it at once."""
        try:
            root = self.session.add_folder(path)
        except ImgfinderError as exc:
            self.notify("Cannot add this folder", str(exc))
            return
        self.statusBar().showMessage(f"Added {root}; indexing…", 5000)
        self.refresh_roots()
        if self.model_info is None:
            self.statusBar().showMessage("Indexing starts when the model is loaded.", 5000)

    def confirm_remove_folder(self, root: str | None = None) -> None:
        roots = [r.path for r in self.library_panel.roots]
        root = root or self.library_panel.current_root() or (roots[0] if len(roots) == 1 else None)
        if not root:
            text = (
                "Select the folder to remove in the library panel first."
                if roots
                else "The library has no folders to remove."
            )
            self.statusBar().showMessage(text, 4000)
            return
        self.remove_box = self._ask(
            "Remove folder from the library?",
            f"Forget {root} and its indexed photos?\n\nNo file on disk is touched; add the "
            "folder again to index it anew.",
            lambda yes: yes and self.remove_folder(root),
            cautious=True,
        )

    def remove_folder(self, root: str) -> None:
        """Forget a folder (after confirmation): indexing stops first, removal runs in a worker."""
        self.index_ctl.shutdown()
        lib = self.lib

        def removed(n) -> None:
            self.statusBar().showMessage(f"Removed {root} ({n:,} entries forgotten)", 6000)
            self.index_ctl.set_enabled(self.model_info is not None)
            self.refresh_roots()
            self.refresh_skipped()

        def failed(msg: str) -> None:
            self.index_ctl.set_enabled(self.model_info is not None)
            self.notify("Cannot remove folder", msg)

        self.tasks.run(lambda: lib.remove_root(root), removed, failed)

    def _index_progress(self, p: Progress) -> None:
        self.index_progress.set_progress(p)

    def _index_batch(self) -> None:
        self.library_view.refresh_soon()

    def _index_finished(self, summary: IndexSummary | None) -> None:
        self.refresh_roots()
        self.refresh_skipped()
        if summary is None:
            return
        lib = self.lib

        def show(counts: dict) -> None:
            msg = run_summary_text(summary, counts.get("ok", 0), counts.get("failed", 0))
            if summary.missing_roots:
                msg += f" · {len(summary.missing_roots)} folder(s) not available, entries kept"
            self.statusBar().showMessage(msg, 10000)

        self.tasks.run(lambda: lib.catalog.counts(), show)
        if summary.indexed or summary.removed or summary.moved:
            self.search.refresh_results()

    # -- settings ----------------------------------------------------------------------------
    def open_settings(self) -> None:
        dlg = SettingsDialog(
            self.settings,
            self.effective,
            self.data_dir,
            self,
            library=lambda: self.lib,  # the library open when learning starts
            tasks=self.tasks,
        )
        dlg.accepted.connect(lambda: self.apply_settings(dlg.values()))
        self.settings_dialog = dlg
        dlg.open()

    def apply_settings(self, values: dict) -> None:
        changed = self.session.apply_settings(values)
        self.search.set_thumb_size(self.settings.thumb_size)
        self.watcher.set_rescan_minutes(self.settings.rescan_minutes)
        if changed:
            log.info("library settings changed (%s); reopening", ", ".join(changed))
            self.session.reopen()

    def save_settings(self) -> None:
        self.session.save_settings()

    def _startup(self) -> None:
        clean_downloads()
        self.refresh_roots()
        self.refresh_skipped()
        self.session.load_model()

    # -- library panel and status bar --------------------------------------------------------
    def refresh_roots(self) -> None:
        self.library_view.refresh_roots()

    def refresh_skipped(self) -> None:
        self.library_view.refresh_skipped()

    def _poll_changed_elsewhere(self) -> None:
        self.library_view.poll_changed_elsewhere()

    def update_empty_text(self) -> None:
        folders, photos = self.library_view.counts
        missing = self.session.weights_missing_now
        self.results_view.empty_text = empty_grid_text(
            weights_missing=missing, folders=folders, photos=photos
        )
        self.results_view.viewport().update()

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

    # -- state and shutdown --------------------------------------------------------------------
    def _splitters(self) -> dict[str, QSplitter]:
        """The splitters whose positions are remembered, by their settings field."""
        return {
            "search_split_state": self.search.split,
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
        if not self._laid_out:
            self._laid_out = True
            QTimer.singleShot(0, self._initial_search_layout)

    def _initial_search_layout(self) -> None:
        """First start: 3 rows of thumbnails, explanations below or folded (e.g. 1280x800)."""
        s = self.settings
        self.first_layout_done = True
        self.search.initial_layout(s.explain_folded is not None or bool(s.search_split_state))

    def remember_layout(self) -> None:
        """Put the window geometry, dock layout and splitter positions into the settings."""
        s = self.settings
        s.window_geometry = to_hex(self.saveGeometry())
        s.window_state = to_hex(self.saveState())
        for name, split in self._splitters().items():
            setattr(s, name, to_hex(split.saveState()))
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
        if self._shut:
            return False
        if self._stopping:
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
        if self._shut:
            return
        self._shut = True
        self.library_view.shutdown()
        self.watcher.shutdown()
        self.index_ctl.shutdown()
        if self.train_dialog is not None:  # cancels the run (checkpointed) and waits for it
            self.train_dialog.shutdown()
            self.train_dialog.close()
        self.dupes_view.shutdown()
        self.search.shutdown()  # the explanation jobs use the library's model
        self.weights.shutdown()
        if self.settings_dialog is not None and shiboken6.isValid(self.settings_dialog):
            self.settings_dialog.cancel_learning()  # a whitening still learning is not saved
        self.search_ctl.shutdown()
        self.loader.shutdown()
        self.tasks.shutdown()
        self.session.close()
        gc.unfreeze()  # see LibrarySession._model_ready: let interpreter shutdown clean up

    # -- drops on the whole window ------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if can_accept(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if can_accept(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        found = from_mime(event.mimeData())
        event.acceptProposedAction() if found else event.ignore()
        self.search.handle_incoming(found)

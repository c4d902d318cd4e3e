"""What the window shows of the library: its folders, their watch state, counts and skipped files.

`LibraryView` keeps the library panel, the skipped-files table and the status-bar labels
(photo count, watching, "N skipped") up to date from the session's library, off the GUI
thread; it notices drives that came back and changes made by another process (a CLI
`imgfinder index`, a second window) and asks the session to rescan.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel, QToolButton

from imgfinder.core.catalog import SIGNED
from imgfinder.gui.library_panel import LibraryPanel
from imgfinder.gui.library_session import LibrarySession
from imgfinder.gui.skipped_view import SkippedPanel
from imgfinder.gui.watcher import FolderWatcher
from imgfinder.gui.workers import TaskRunner

log = logging.getLogger(__name__)


def size_text(counts: dict[str, int]) -> str:
    """The status bar's library size from catalog.counts(): photos with a vector, and those
    catalogued by `index --signatures-only` (in the duplicates, not yet in searches)."""
    ok, signed = counts.get("ok", 0), counts.get(SIGNED, 0)
    text = f"{ok:,} photo{'s' if ok != 1 else ''} in the library"
    return text + (f" (+{signed:,} not indexed for search yet)" if signed else "")


class LibraryView(QObject):
    """Refreshes the library's panels and labels; `counts_changed(folders, photos)` after each."""

    counts_changed = Signal(int, int)
    skipped_clicked = Signal()

    def __init__(
        self,
        session: LibrarySession,
        watcher: FolderWatcher,
        tasks: TaskRunner,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.session, self.watcher, self.tasks = session, watcher, tasks
        self.panel = LibraryPanel()
        self.skipped = SkippedPanel()
        self.skipped_button = QToolButton()
        self.skipped_button.setAutoRaise(True)
        self.skipped_button.clicked.connect(self.skipped_clicked)
        self.skipped_button.hide()
        self.size_label = QLabel()
        self.watch_label = QLabel()
        self.counts = (0, 0)  # (folders, photos) at the last refresh
        self._available: dict[str, bool] = {}  # root -> available at the last refresh
        self.skipped.count_changed.connect(self._skipped_count)
        watcher.states_changed.connect(self._watch_states)
        self._soon = QTimer(self, singleShot=True, interval=1500)  # during indexing
        self._soon.timeout.connect(self.refresh_roots)
        self._avail_timer = QTimer(self, interval=60_000)  # notice drives coming and going
        self._avail_timer.timeout.connect(self.refresh_roots)
        self._avail_timer.start()
        self._elsewhere_timer = QTimer(self, interval=3000)
        self._elsewhere_timer.timeout.connect(self.poll_changed_elsewhere)
        self._elsewhere_timer.start()

    def refresh_soon(self) -> None:
        """At most one refresh per 1.5 s (each indexed batch asks for one)."""
        if not self._soon.isActive():
            self._soon.start()

    def refresh(self) -> None:
        self.refresh_roots()
        self.refresh_skipped()

    def refresh_roots(self) -> None:
        lib = self.session.lib
        self.tasks.run(lambda: (lib.roots(), lib.catalog.counts()), self._roots_loaded)

    def _roots_loaded(self, result) -> None:
        roots, counts = result
        self.panel.set_roots(roots, self.watcher.states, self.watcher.rescan_minutes)
        self.watcher.set_roots([(r.path, r.available) for r in roots])
        ok = counts.get("ok", 0)
        self.size_label.setText(size_text(counts))
        self.counts = (len(roots), ok)
        self.counts_changed.emit(len(roots), ok)
        back = [r.path for r in roots if r.available and self._available.get(r.path) is False]
        self._available = {r.path: r.available for r in roots}
        if back:
            self.session.auto_rescan(f"{len(back)} folder(s) available again")

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
        self.panel.set_roots(self.panel.roots, states, self.watcher.rescan_minutes)

    def poll_changed_elsewhere(self) -> None:
        try:
            changed = self.session.lib.changed_elsewhere()  # PRAGMA data_version: cheap
        except Exception:  # noqa: BLE001 - a closing or broken catalog: the next action says so
            return
        if changed:
            self.refresh()

    def refresh_skipped(self) -> None:
        lib = self.session.lib
        self.tasks.run(lambda: lib.catalog.failed(), self.skipped.set_rows)

    def _skipped_count(self, n: int) -> None:
        self.skipped_button.setText(f"{n:,} skipped")
        self.skipped_button.setToolTip("Show the files indexing could not use, and why")
        self.skipped_button.setVisible(n > 0)

    def shutdown(self) -> None:
        self._avail_timer.stop()
        self._elsewhere_timer.stop()

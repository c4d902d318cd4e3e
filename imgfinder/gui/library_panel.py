"""The library panel: watched folders with per-folder counts, missing and watch states."""

from __future__ import annotations

import logging
import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from imgfinder.gui.watcher import WatchState

log = logging.getLogger(__name__)

PathRole = Qt.ItemDataRole.UserRole + 1
StateRole = Qt.ItemDataRole.UserRole + 2


class LibraryPanel(QWidget):
    """Folder list with add/remove/rescan; a missing folder keeps its entries and says so."""

    add_clicked = Signal()
    remove_clicked = Signal(str)
    rescan_clicked = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary = QLabel("No folders yet.")
        self.summary.setWordWrap(True)
        self.list = QListWidget()
        self.list.setAccessibleName("Library folders")
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(False)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.add_button = QPushButton("&Add folder…")
        self.remove_button = QPushButton("Remove")
        self.rescan_button = QPushButton("Rescan")
        self.add_button.clicked.connect(self.add_clicked)
        self.remove_button.clicked.connect(self._remove)
        self.rescan_button.clicked.connect(self.rescan_clicked)
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.rescan_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.summary)
        lay.addWidget(self.list, 1)
        lay.addLayout(buttons)
        self.roots: list = []
        self._update_buttons()

    def set_roots(self, roots: list, watch: dict[str, WatchState], rescan_minutes: int) -> None:
        """roots: core RootInfo objects; watch: per-root watch state."""
        current = self.current_root()
        self.roots = list(roots)
        self.list.clear()
        style = self.style()
        missing = 0
        for r in roots:
            name = os.path.basename(r.path.rstrip(os.sep)) or r.path
            counts = f"{r.ok:,} photo{'s' if r.ok != 1 else ''}"
            if r.failed:
                counts += f" · {r.failed:,} skipped"
            if not r.available:
                missing += 1
                state = "missing"
                status = f"missing — {r.ok + r.failed:,} entries kept until it is back"
                icon = style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
            else:
                ws = watch.get(r.path)
                state = ws.mode if ws else "pending"
                status = counts + (f" · {ws.describe(rescan_minutes)}" if ws else "")
                icon = style.standardIcon(QStyle.StandardPixmap.SP_DirIcon)
            item = QListWidgetItem(icon, f"{name}\n{status}")
            item.setToolTip(
                f"{r.path}\n{counts}\n"
                + (
                    "Not available now (unplugged drive or offline share?). "
                    "Its entries are kept, not deleted."
                    if not r.available
                    else status
                )
            )
            item.setData(PathRole, r.path)
            item.setData(StateRole, state)
            if not r.available:
                item.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
            self.list.addItem(item)
            if r.path == current:
                self.list.setCurrentItem(item)
        total = sum(r.ok for r in roots)
        n = len(roots)
        text = f"{n} folder{'s' if n != 1 else ''} · {total:,} photos" if n else "No folders yet."
        if missing:
            text += f" · {missing} missing"
        self.summary.setText(text)
        self._update_buttons()

    def current_root(self) -> str | None:
        item = self.list.currentItem()
        return item.data(PathRole) if item is not None else None

    def state_of(self, path: str) -> str | None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(PathRole) == path:
                return item.data(StateRole)
        return None

    def _remove(self) -> None:
        root = self.current_root()
        if root:
            self.remove_clicked.emit(root)

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(self.current_root() is not None)
        self.rescan_button.setEnabled(bool(self.roots))

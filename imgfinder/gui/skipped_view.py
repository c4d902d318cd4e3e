"""The "skipped files" view: every file indexing could not use, with the reason, never a popup."""

from __future__ import annotations

import logging
import os
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from imgfinder.gui import desktop

log = logging.getLogger(__name__)

Index = QModelIndex | QPersistentModelIndex


class SkippedModel(QAbstractTableModel):
    HEADERS = ("File", "Reason", "Folder")  # the folder last: it takes the remaining width

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list[tuple[str, str]] = []

    def set_rows(self, rows: list[tuple[str, str]]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def path(self, row: int) -> str:
        return self._rows[row][0]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        path, reason = self._rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return (os.path.basename(path), reason, os.path.dirname(path))[index.column()]
        if role == Qt.ItemDataRole.UserRole:
            return path
        return None

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None


class SkippedPanel(QWidget):
    """Table of skipped files with a filter; the status bar shows the count and opens this."""

    count_changed = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = SkippedModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAccessibleName("Skipped files")
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter skipped files")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.summary = QLabel("No skipped files.")
        copy = QPushButton("Copy path")
        copy.clicked.connect(self._copy)
        show = QPushButton("Show in folder")
        show.clicked.connect(self._show)
        top = QHBoxLayout()  # two rows: the panel sits in the narrow right dock
        top.addWidget(copy)
        top.addWidget(show)
        top.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.filter)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.table)

    def set_rows(self, rows: list[tuple[str, str]]) -> None:
        self.model.set_rows(rows)
        n = len(rows)
        self.summary.setText(
            "No skipped files."
            if not n
            else f"{n} file{'s' if n != 1 else ''} could not be indexed; they are retried when "
            "they change."
        )
        for col in (0, 1):
            self.table.resizeColumnToContents(col)
            self.table.setColumnWidth(col, min(self.table.columnWidth(col), 420))
        self.count_changed.emit(n)

    def _selected_path(self) -> str | None:
        ix = self.table.currentIndex()
        return ix.siblingAtColumn(0).data(Qt.ItemDataRole.UserRole) if ix.isValid() else None

    def _copy(self) -> None:
        p = self._selected_path()
        if p:
            desktop.copy_path(p)

    def _show(self) -> None:
        p = self._selected_path()
        if p:
            desktop.show_in_folder(p)

"""A bottom pane of tabs that folds down to its tab bar, so the results grid gets the height.

The explanation views (query attention, why it matches) live in one. Folded, only the tab bar
shows; clicking a tab unfolds the pane on that tab, clicking the open tab folds it again.
The API follows QTabWidget's where the window uses it (addTab, setCurrentWidget, ...).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

QWIDGETSIZE_MAX = (1 << 24) - 1
UNFOLDED_MIN = 200  # an unfolded pane is never squeezed below this (its image would vanish)


class FoldingTabPane(QWidget):
    """Tabs over a stack; `set_folded(True)` leaves just the tab bar (in a vertical splitter)."""

    folded_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.tabs = QTabBar()
        self.tabs.setDocumentMode(True)
        self.tabs.setExpanding(False)
        self.stack = QStackedWidget()
        self.stack.setMinimumHeight(UNFOLDED_MIN - 30)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.tabs)
        lay.addWidget(self.stack, 1)
        self.tabs.currentChanged.connect(self.stack.setCurrentIndex)
        self.tabs.tabBarClicked.connect(self._tab_clicked)
        self.folded = False
        self._unfolded_height = 0

    # -- QTabWidget-like API ----------------------------------------------------------------
    def addTab(self, widget: QWidget, title: str) -> int:  # noqa: N802
        self.stack.addWidget(widget)
        return self.tabs.addTab(title)

    def setTabToolTip(self, index: int, tip: str) -> None:  # noqa: N802
        self.tabs.setTabToolTip(index, tip)

    def setCurrentWidget(self, widget: QWidget) -> None:  # noqa: N802
        self.setCurrentIndex(self.stack.indexOf(widget))

    def setCurrentIndex(self, index: int) -> None:  # noqa: N802
        if 0 <= index < self.count():
            self.tabs.setCurrentIndex(index)

    def currentIndex(self) -> int:  # noqa: N802
        return self.tabs.currentIndex()

    def currentWidget(self) -> QWidget | None:  # noqa: N802
        return self.stack.currentWidget()

    def widget(self, index: int) -> QWidget | None:
        return self.stack.widget(index)

    def count(self) -> int:
        return self.tabs.count()

    # -- folding ----------------------------------------------------------------------------
    def folded_height(self) -> int:
        return self.tabs.sizeHint().height()

    def _splitter(self) -> QSplitter | None:
        p = self.parentWidget()
        return p if isinstance(p, QSplitter) else None

    def _tab_clicked(self, index: int) -> None:
        if self.folded:
            self.set_folded(False)
        elif index == self.currentIndex():
            self.set_folded(True)

    def set_folded(self, folded: bool, *, height: int | None = None) -> None:
        """Fold to the tab bar, or unfold to `height` (default: as tall as before folding)."""
        split = self._splitter()
        if folded == self.folded and height is None:
            return
        if folded and not self.folded:
            self._unfolded_height = self.height()
        self.folded = folded
        self.stack.setVisible(not folded)
        if folded:
            self.setMaximumHeight(self.folded_height())
            self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        else:
            self.setMaximumHeight(QWIDGETSIZE_MAX)
            self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        if split is not None:
            total = sum(split.sizes())
            if folded:
                mine = self.folded_height()
            else:
                mine = height or self._unfolded_height or total * 2 // 5
                mine = max(UNFOLDED_MIN, min(mine, total - 120))
            i = split.indexOf(self)
            sizes = split.sizes()
            other = 1 - i
            sizes[i], sizes[other] = mine, max(0, total - mine)
            split.setSizes(sizes)
        self.folded_changed.emit(folded)

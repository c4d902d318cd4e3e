"""The results grid: a QListView in icon mode with a delegate that draws the score on each tile."""

from __future__ import annotations

import logging

from PySide6.QtCore import QModelIndex, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QStyledItemDelegate

from imgfinder.gui.results_model import ItemRole, ThumbStateRole

log = logging.getLogger(__name__)

PAD = 6


class ResultDelegate(QStyledItemDelegate):
    """A square thumbnail, a score badge in its corner and the file name below."""

    def __init__(self, parent=None, size: int = 160):
        super().__init__(parent)
        self.size = size

    def sizeHint(self, option, index) -> QSize:  # noqa: N802
        fm = option.fontMetrics
        return QSize(self.size + 2 * PAD, self.size + 2 * PAD + fm.height() + 2)

    def paint(self, painter: QPainter, option, index: QModelIndex) -> None:
        item = index.data(ItemRole)
        if item is None:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        r = option.rect.adjusted(2, 2, -2, -2)
        pal = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hover = bool(option.state & QStyle.StateFlag.State_MouseOver)
        if selected or hover:
            c = QColor(pal.color(QPalette.ColorRole.Highlight))
            c.setAlpha(200 if selected else 50)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c)
            painter.drawRoundedRect(r, 6, 6)
        if option.state & QStyle.StateFlag.State_HasFocus and selected:
            painter.setPen(pal.color(QPalette.ColorRole.Highlight).darker(130))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(r, 6, 6)
        square = QRect(r.x() + (r.width() - self.size) // 2, r.y() + PAD - 2, self.size, self.size)
        pm = index.data(Qt.ItemDataRole.DecorationRole)
        image = square
        if isinstance(pm, QPixmap) and not pm.isNull():
            image = self._draw_fitted(painter, pm, square)
        if index.data(ThumbStateRole) == "broken":
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(square, Qt.AlignmentFlag.AlignCenter, "cannot read")
        self._draw_badge(painter, image, item.score)
        text_rect = QRect(
            r.x() + 4, square.bottom() + 4, r.width() - 8, option.fontMetrics.height()
        )
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        painter.setPen(pal.color(role))
        name = option.fontMetrics.elidedText(
            index.data(Qt.ItemDataRole.DisplayRole) or "",
            Qt.TextElideMode.ElideMiddle,
            text_rect.width(),
        )
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, name)
        painter.restore()

    @staticmethod
    def _draw_fitted(painter: QPainter, pm: QPixmap, square: QRect) -> QRect:
        w, h = pm.width(), pm.height()
        scale = min(square.width() / w, square.height() / h)
        tw, th = max(1, int(w * scale)), max(1, int(h * scale))
        target = QRect(
            square.x() + (square.width() - tw) // 2,
            square.y() + square.height() - th,  # bottom-aligned: the name sits right below
            tw,
            th,
        )
        painter.drawPixmap(target, pm)
        return target

    @staticmethod
    def _draw_badge(painter: QPainter, square: QRect, score: float) -> None:
        font = QFont(painter.font())
        font.setBold(True)
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        fm = QFontMetrics(font)
        text = f"{score:.3f}"
        bw, bh = fm.horizontalAdvance(text) + 10, fm.height() + 2
        badge = QRect(square.x() + 3, square.y() + 3, bw, bh)
        painter.setPen(Qt.PenStyle.NoPen)
        if score >= 0.9:
            painter.setBrush(QColor(30, 120, 60, 220))
        else:
            painter.setBrush(QColor(20, 20, 20, 170))
        painter.drawRoundedRect(badge, 4, 4)
        painter.setFont(font)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)


class ResultsView(QListView):
    """Icon-mode list: uniform sizes so 10,000 results lay out and scroll cheaply."""

    zoom_requested = Signal(int)  # +1 / -1 steps
    painted = Signal(int)  # rows in the model when a paint finished (for latency figures)
    item_activated = Signal(object)  # ResultItem (double-click or Enter)
    context_requested = Signal(object, QPoint)  # ResultItem, global position

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(400)
        self.setWrapping(True)
        self.setSpacing(2)
        # Ctrl/Shift-click select several results (copy paths, show in folder, open)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setMouseTracking(True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.doubleClicked.connect(self._activate)
        self.empty_text = ""
        self.delegate = ResultDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setAccessibleName("Search results")

    def set_thumb_size(self, size: int) -> None:
        self.delegate.size = size
        self._update_grid()
        self.viewport().update()

    def _update_grid(self) -> None:
        """Spread the columns over the whole width instead of leaving a ragged gap on the right."""
        size = self.delegate.size
        cell_w = size + 2 * PAD + 4
        cell_h = size + PAD + self.fontMetrics().height() + 6
        width = max(cell_w, self.viewport().width() - 2)
        cols = max(1, width // cell_w)
        self.setGridSize(QSize(width // cols, cell_h))

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._update_grid()

    def current_item(self):
        ix = self.currentIndex()
        return ix.data(ItemRole) if ix.isValid() else None

    def selected_items(self) -> list:
        """The selected results in grid order; none selected: the current one, if any."""
        rows = sorted(ix.row() for ix in self.selectionModel().selectedIndexes())
        items = [self.model().index(r, 0).data(ItemRole) for r in rows]
        items = [it for it in items if it is not None]
        if not items and self.current_item() is not None:
            items = [self.current_item()]
        return items

    def _activate(self, index: QModelIndex) -> None:
        item = index.data(ItemRole)
        if item is not None:
            self.item_activated.emit(item)

    def _context_menu(self, pos: QPoint) -> None:
        ix = self.indexAt(pos)
        if ix.isValid():
            if not self.selectionModel().isSelected(ix):  # a click outside the selection
                self.setCurrentIndex(ix)
            self.context_requested.emit(ix.data(ItemRole), self.viewport().mapToGlobal(pos))

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self._activate(self.currentIndex())
            event.accept()
            return
        if event.key() == Qt.Key.Key_Menu and self.currentIndex().isValid():
            rect = self.visualRect(self.currentIndex())
            self.context_requested.emit(
                self.current_item(), self.viewport().mapToGlobal(rect.center())
            )
            return
        super().keyPressEvent(event)

    def wheelEvent(self, event) -> None:  # noqa: N802
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            dy = event.angleDelta().y()
            if dy:
                self.zoom_requested.emit(1 if dy > 0 else -1)
            event.accept()
            return
        super().wheelEvent(event)

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        model = self.model()
        rows = model.rowCount() if model is not None else 0
        if rows == 0 and self.empty_text:
            p = QPainter(self.viewport())
            p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            p.drawText(
                self.viewport().rect().adjusted(24, 24, -24, -24),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.empty_text,
            )
            p.end()
        self.painted.emit(rows)

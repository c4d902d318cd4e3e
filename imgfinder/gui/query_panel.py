"""The query panel: a drop zone showing the query image, history buttons and result controls."""

from __future__ import annotations

import logging
import math

from PySide6.QtCore import QMimeData, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from imgfinder.gui.items import Query
from imgfinder.gui.query import Incoming, from_mime
from imgfinder.gui.settings import MAX_RESULTS

log = logging.getLogger(__name__)

PREVIEW_PX = 112


def can_accept(mime: QMimeData | None) -> bool:
    """Cheap check for dragEnter: reading the payload waits for the drop."""
    if mime is None:
        return False
    return (
        mime.hasUrls()
        or mime.hasImage()
        or mime.hasText()
        or any(f.startswith("image/") for f in mime.formats())
    )


class DropZone(QFrame):
    """Dashed frame that takes drops; it shows the current query image and a hint."""

    incoming = Signal(object)  # Incoming

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setAccessibleName("Query drop zone")
        self._hover = False
        self.preview = QLabel()
        self.preview.setFixedSize(PREVIEW_PX, PREVIEW_PX)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title = QLabel("<b>Drop a photo here</b>")
        self.hint = QLabel(
            "…or paste it (Ctrl+V), open a file (Ctrl+O), drop an image from a web page, "
            "or double-click a result to search from it."
        )
        self.hint.setWordWrap(True)
        self.hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        text = QVBoxLayout()
        text.addWidget(self.title)
        text.addWidget(self.hint)
        text.addWidget(self.message)
        text.addStretch(1)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 10, 10, 10)
        lay.addWidget(self.preview)
        lay.addLayout(text, 1)
        self.setMinimumHeight(PREVIEW_PX + 22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.clear_preview()

    def clear_preview(self) -> None:
        pm = QPixmap(PREVIEW_PX, PREVIEW_PX)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(self.palette().color(QPalette.ColorRole.PlaceholderText), 2))
        p.drawRoundedRect(pm.rect().adjusted(8, 8, -8, -8), 8, 8)
        p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter, "+")
        p.end()
        self.preview.setPixmap(pm)

    def set_preview(self, image: QImage | None) -> None:
        if image is None or image.isNull():
            self.clear_preview()
            return
        pm = QPixmap.fromImage(image).scaled(
            QSize(PREVIEW_PX, PREVIEW_PX),
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self.preview.setPixmap(pm)

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        color = self.palette().color(QPalette.ColorRole.Highlight)
        if not self._hover:
            color = self.palette().color(QPalette.ColorRole.Mid)
        pen = QPen(color, 2, Qt.PenStyle.DashLine)
        p.setPen(pen)
        fill = QColor(color)
        fill.setAlpha(40 if self._hover else 12)
        p.setBrush(fill)
        p.drawRoundedRect(self.rect().adjusted(2, 2, -2, -2), 10, 10)
        p.end()

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if can_accept(event.mimeData()):
            event.acceptProposedAction()
            self._hover = True
            self.update()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if can_accept(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self._hover = False
        self.update()

    def dropEvent(self, event) -> None:  # noqa: N802
        self._hover = False
        self.update()
        found = from_mime(event.mimeData())
        if found is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.incoming.emit(found)


def _k_to_slider(k: int) -> int:
    return round(100 * math.log10(max(1, k)) / math.log10(MAX_RESULTS))


def _slider_to_k(v: int) -> int:
    return max(1, round(10 ** (v * math.log10(MAX_RESULTS) / 100)))


class QueryPanel(QWidget):
    """Drop zone on the left, history and result controls on the right."""

    incoming = Signal(object)  # Incoming
    count_changed = Signal(int)  # debounced
    min_score_changed = Signal(float)
    filter_changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.drop_zone = DropZone()
        self.drop_zone.incoming.connect(self.incoming)
        self.back_button = QToolButton()
        self.forward_button = QToolButton()
        self.busy = QLabel()
        self.busy.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, MAX_RESULTS)
        self.count_spin.setAccessibleName("Number of results")
        self.count_slider = QSlider(Qt.Orientation.Horizontal)
        self.count_slider.setRange(0, 100)
        self.count_slider.setAccessibleName("Number of results (slider)")
        self.count_spin.valueChanged.connect(self._count_spin_changed)
        self.count_slider.valueChanged.connect(self._count_slider_changed)
        self._count_timer = QTimer(self, singleShot=True, interval=200)
        self._count_timer.timeout.connect(lambda: self.count_changed.emit(self.count_spin.value()))

        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(-1.0, 1.0)
        self.min_score.setSingleStep(0.01)
        self.min_score.setDecimals(3)
        self.min_score.setAccessibleName("Minimum similarity")
        self.min_score.valueChanged.connect(self.min_score_changed)

        self.last_message = ""
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter results by path (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.filter_changed)

        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        nav = QHBoxLayout()
        nav.addWidget(self.back_button)
        nav.addWidget(self.forward_button)
        nav.addSpacing(8)
        nav.addWidget(self.busy, 1)
        grid.addLayout(nav, 0, 0, 1, 3)
        lbl = QLabel("&Results:")
        lbl.setBuddy(self.count_spin)
        grid.addWidget(lbl, 1, 0)
        grid.addWidget(self.count_slider, 1, 1)
        grid.addWidget(self.count_spin, 1, 2)
        lbl = QLabel("&Min. score:")
        lbl.setBuddy(self.min_score)
        grid.addWidget(lbl, 2, 0)
        grid.addWidget(self.min_score, 2, 1, 1, 2)
        grid.addWidget(self.filter_edit, 3, 0, 1, 3)
        side = QWidget()
        side.setLayout(grid)
        side.setMaximumWidth(340)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 2)
        lay.addWidget(self.drop_zone, 1)
        lay.addWidget(side)

    # -- values ------------------------------------------------------------------------
    def set_values(self, count: int, min_score: float) -> None:
        for w in (self.count_spin, self.count_slider, self.min_score):
            w.blockSignals(True)
        self.count_spin.setValue(count)
        self.count_slider.setValue(_k_to_slider(count))
        self.min_score.setValue(min_score)
        for w in (self.count_spin, self.count_slider, self.min_score):
            w.blockSignals(False)

    def _count_spin_changed(self, k: int) -> None:
        self.count_slider.blockSignals(True)
        self.count_slider.setValue(_k_to_slider(k))
        self.count_slider.blockSignals(False)
        self._count_timer.start()

    def _count_slider_changed(self, v: int) -> None:
        self.count_spin.setValue(_slider_to_k(v))

    # -- query and messages ------------------------------------------------------------
    def set_query(self, query: Query | None) -> None:
        dz = self.drop_zone
        if query is None:
            dz.title.setText("<b>Drop a photo here</b>")
            dz.clear_preview()
            return
        dz.title.setText(f"<b>Query:</b> {_escape(query.label)}")
        dz.title.setToolTip(query.path or query.label)
        dz.set_preview(query.preview)

    def set_busy(self, text: str) -> None:
        self.busy.setText(text)

    def show_message(self, text: str, error: bool = True) -> None:
        dz = self.drop_zone
        self.last_message = text
        if not text:
            dz.message.hide()
            return
        color = "#b00020" if error else self.palette().color(QPalette.ColorRole.Text).name()
        dz.message.setText(f"<span style='color:{color}'>{_escape(text)}</span>")
        dz.message.show()

    def message_text(self) -> str:
        return self.last_message

    def handle(self, found: Incoming) -> None:
        self.incoming.emit(found)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

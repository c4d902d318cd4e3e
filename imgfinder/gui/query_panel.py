"""The query panel: a drop zone showing the query image, history buttons and result controls."""

from __future__ import annotations

import logging
import math
import os

from PySide6.QtCore import QMimeData, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
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
from imgfinder.gui.results_model import DATE_FILTERS, SORT_KEYS
from imgfinder.gui.settings import MAX_RESULTS

log = logging.getLogger(__name__)

PREVIEW_PX = 72  # the drop zone stays low: the grid below gets the height


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
        self.hint = QLabel("…or paste (Ctrl+V), open (Ctrl+O), or double-click a result.")
        self.hint.setToolTip(
            "Drop a photo file or an image from a web page, paste one (Ctrl+V), open a file "
            "(Ctrl+O), or double-click a result to search from it."
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
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.preview)
        lay.addLayout(text, 1)
        self.setMinimumHeight(PREVIEW_PX + 14)
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
    view_changed = Signal()  # folder, date or sort order of the results changed

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
        self.min_score.setSpecialValueText("off")  # shown at -1: every result is kept
        self.min_score.setSingleStep(0.01)
        self.min_score.setDecimals(3)
        self.min_score.setAccessibleName("Minimum similarity")
        self.min_score.valueChanged.connect(self.min_score_changed)

        self.last_message = ""
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.filter_changed)
        self.folder_combo = QComboBox()
        self.folder_combo.setAccessibleName("Show results from folder")
        self.folder_combo.setToolTip("Show only the results in one folder")
        self.folder_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.folder_combo.setMinimumContentsLength(9)
        self.set_folders([])
        self.date_combo = QComboBox()
        self.date_combo.setAccessibleName("Show results by date")
        self.date_combo.setToolTip("Show only results from this time (the file's date)")
        for label, _, _ in DATE_FILTERS:
            self.date_combo.addItem(label)
        self.sort_combo = QComboBox()
        self.sort_combo.setAccessibleName("Sort results")
        self.sort_combo.setToolTip("Order of the results")
        for label, key in SORT_KEYS:
            self.sort_combo.addItem(label, key)
        for combo in (self.folder_combo, self.date_combo, self.sort_combo):
            combo.currentIndexChanged.connect(lambda _i: self.view_changed.emit())

        grid = QGridLayout()
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(3)
        grid.setContentsMargins(0, 0, 0, 0)
        nav = QHBoxLayout()
        nav.addWidget(self.back_button)
        nav.addWidget(self.forward_button)
        nav.addSpacing(8)
        nav.addWidget(self.busy, 1)
        grid.addLayout(nav, 0, 0, 1, 4)
        lbl = QLabel("&Results:")
        lbl.setBuddy(self.count_spin)
        grid.addWidget(lbl, 1, 0)
        grid.addWidget(self.count_slider, 1, 1)
        grid.addWidget(self.count_spin, 1, 2)
        score = QHBoxLayout()
        lbl = QLabel("&Min. score:")
        lbl.setBuddy(self.min_score)
        score.addWidget(lbl)
        score.addWidget(self.min_score)
        grid.addLayout(score, 1, 3)
        view = QHBoxLayout()
        view.addWidget(self.filter_edit, 2)
        view.addWidget(self.folder_combo, 2)
        view.addWidget(self.date_combo, 1)
        view.addWidget(self.sort_combo, 1)
        grid.addLayout(view, 2, 0, 1, 4)
        side = QWidget()
        side.setLayout(grid)
        side.setMaximumWidth(620)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 2)
        lay.addWidget(self.drop_zone, 1)
        lay.addWidget(side)

    # -- values ------------------------------------------------------------------------
    def set_folders(self, folders: list[str]) -> None:
        """The folder filter's choices: every folder the current results are in."""
        keep = self.folder()
        combo = self.folder_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem("All folders", None)
        for f in folders:
            combo.addItem(os.path.basename(f) or f, f)
            combo.setItemData(combo.count() - 1, f, Qt.ItemDataRole.ToolTipRole)
        i = combo.findData(keep) if keep else 0
        combo.setCurrentIndex(max(0, i))
        combo.blockSignals(False)
        if keep and i < 0:
            self.view_changed.emit()  # that folder is not among the new results

    def folder(self) -> str | None:
        return self.folder_combo.currentData()

    def date_filter(self) -> int:
        return self.date_combo.currentIndex()

    def sort_key(self) -> str:
        return str(self.sort_combo.currentData())

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

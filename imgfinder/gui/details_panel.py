"""Details of the selected result: a larger preview, file facts and actions; hosts extra sections."""

from __future__ import annotations

import datetime as dt
import logging
import os

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QPalette, QPixmap
from PySide6.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from imgfinder.core.catalog import display_path
from imgfinder.gui import desktop
from imgfinder.gui.items import ResultItem, thumb_key
from imgfinder.gui.thumbnails import ThumbnailLoader, ThumbRequest

log = logging.getLogger(__name__)

PREVIEW_BUCKET = 512
# Photographers' facts from the catalog (EXIF; core/photometa.py), then how the model saw it.
PHOTO_FIELDS = ("Taken", "Camera", "Lens", "Exposure", "GPS", "Decoded from")
SOURCE_TEXT = {
    "full": "full image",
    "dct-draft": "full image, JPEG-scaled",
    "mpf-preview": "embedded JPEG preview (MPF)",
    "raw-preview": "RAW's embedded preview",
    "raw-demosaic": "RAW, demosaiced",
}


def photo_facts(item: ResultItem) -> dict[str, str]:
    """The PHOTO_FIELDS texts of one result ("unknown" where the file does not say)."""
    m = item.meta
    taken = m.taken.replace("T", " ") if m is not None and m.taken else None
    return {
        "Taken": taken or "unknown",
        "Camera": (m.camera if m is not None else None) or "unknown",
        "Lens": (m.lens if m is not None else None) or "unknown",
        "Exposure": (m.exposure if m is not None else None) or "unknown",
        "GPS": ("yes" if m.gps else "no") if m is not None else "unknown",
        "Decoded from": SOURCE_TEXT.get(item.decode_source or "", item.decode_source or "unknown"),
    }


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} bytes"


def _breakable(text: str) -> str:
    """Let long paths wrap after separators (zero-width spaces; copying uses the real path)."""
    return text.replace(os.sep, os.sep + "\u200b").replace("_", "_\u200b")


NO_ITEM_TEXT = "Select a result to see its details."


class DetailsPanel(QScrollArea):
    """Facts about one result; `add_section()` lets other views (e.g. heatmaps) add widgets."""

    search_similar = Signal(object)  # ResultItem
    message = Signal(str)  # for the status bar

    def __init__(self, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.loader = loader
        self.item: ResultItem | None = None
        self._key = ""
        self.setWidgetResizable(True)
        self.setMinimumWidth(260)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        self.body_layout = QVBoxLayout(body)
        self.preview = QLabel(NO_ITEM_TEXT)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(200)
        self.preview.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.preview.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.body_layout.addWidget(self.preview)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.fields: dict[str, QLabel] = {}
        for name in (
            "Name",
            "Folder",
            "Dimensions",
            *PHOTO_FIELDS,
            "Modified",
            "File size",
            "Similarity",
        ):
            lbl = QLabel("–")
            lbl.setWordWrap(True)
            lbl.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            lbl.setMinimumWidth(60)
            lbl.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[name] = lbl
            form.addRow(f"{name}:", lbl)
        self.body_layout.addLayout(form)

        self.open_button = QPushButton("&Open")
        self.show_button = QPushButton("Show in &folder")
        self.copy_button = QPushButton("Copy &path")
        self.similar_button = QPushButton("&Search similar")
        self.open_button.clicked.connect(self.open_file)
        self.show_button.clicked.connect(self.show_in_folder)
        self.copy_button.clicked.connect(self.copy_path)
        self.similar_button.clicked.connect(self._similar)
        grid = QGridLayout()
        grid.addWidget(self.open_button, 0, 0)
        grid.addWidget(self.show_button, 0, 1)
        grid.addWidget(self.copy_button, 1, 0)
        grid.addWidget(self.similar_button, 1, 1)
        self.body_layout.addLayout(grid)
        self.sections = QVBoxLayout()
        self.body_layout.addLayout(self.sections)
        self.body_layout.addStretch(1)
        self.setWidget(body)
        loader.ready.connect(self._thumb_ready)
        self.set_item(None)

    def add_section(self, title: str, widget: QWidget) -> QGroupBox:
        """Append a titled section below the facts (for heatmaps, duplicate info, ...)."""
        box = QGroupBox(title)
        lay = QVBoxLayout(box)
        lay.addWidget(widget)
        self.sections.addWidget(box)
        return box

    def set_item(self, item: ResultItem | None, hint: str = NO_ITEM_TEXT) -> None:
        """Show one search result's facts; None: none, with `hint` in place of the preview."""
        self.item = item
        enabled = item is not None
        for b in (self.open_button, self.show_button, self.copy_button, self.similar_button):
            b.setEnabled(enabled)
        if item is None:
            self._key = ""
            self.preview.setPixmap(QPixmap())
            self.preview.setText(hint)
            for lbl in self.fields.values():
                lbl.setText("–")
            return
        f = self.fields
        f["Name"].setText(_breakable(display_path(os.path.basename(item.path))))
        f["Folder"].setText(_breakable(display_path(os.path.dirname(item.path))))
        f["Dimensions"].setText(
            f"{item.width} × {item.height} px" if item.width and item.height else "unknown"
        )
        if item.mtime_ns:
            when = dt.datetime.fromtimestamp(item.mtime_ns / 1e9)
            f["Modified"].setText(when.strftime("%Y-%m-%d %H:%M:%S"))
        else:
            f["Modified"].setText("unknown")
        f["File size"].setText(human_size(item.size) if item.size else "unknown")
        for name, text in photo_facts(item).items():
            f[name].setText(text)
        f["Similarity"].setText(f"{item.score:.4f}")
        self._key = thumb_key(item.identity(), PREVIEW_BUCKET)
        pm = self.loader.pixmap(ThumbRequest(self._key, item.path, PREVIEW_BUCKET))
        if pm is None:
            self.preview.setPixmap(QPixmap())
            self.preview.setText("loading preview…")
        else:
            self._show(pm)

    def _show(self, pm: QPixmap) -> None:
        w = max(120, self.viewport().width() - 24)
        side = min(w, 480)
        self.preview.setPixmap(
            pm.scaled(
                QSize(side, side),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    @Slot(str)
    def _thumb_ready(self, key: str) -> None:
        if key != self._key:
            return
        pm = self.loader.cached(key)
        if pm is not None:
            self._show(pm)
        else:
            reason = self.loader.broken(key) or "no preview"
            self.preview.setText(f"Cannot show this file: {reason}")

    # -- actions -------------------------------------------------------------------------
    def open_file(self) -> None:
        if self.item is not None and not desktop.open_path(self.item.path):
            self.message.emit(f"No application could open {self.item.path}")

    def show_in_folder(self) -> None:
        if self.item is not None and not desktop.show_in_folder(self.item.path):
            self.message.emit("Could not open the file manager")

    def copy_path(self) -> None:
        if self.item is not None:
            desktop.copy_path(self.item.path)
            self.message.emit(f"Copied {self.item.path}")

    def _similar(self) -> None:
        if self.item is not None:
            self.search_similar.emit(self.item)

"""Dialogs: settings (persisted in the data dir) and missing model weights (download or pick)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from imgfinder.core.weights import default_weights_file
from imgfinder.gui import desktop
from imgfinder.gui.settings import THUMB_MAX, THUMB_MIN, Effective, GuiSettings

log = logging.getLogger(__name__)

BACKEND_TEXT = {
    "lsh": "lsh: fast approximate search (default)",
    "annoy": "annoy: approximate, rebuilt after changes",
    "exact": "exact: brute force, best for small libraries",
}
WEIGHTS_FILTER = "PyTorch weights (*.pth *.pt *.bin);;All files (*)"


def _device_available(name: str) -> bool:
    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps and mps.is_available())
    return True


class SettingsDialog(QDialog):
    """Device, input size, index backend, weights, thumbnails, rescans; shows the data folder."""

    def __init__(self, settings: GuiSettings, effective: Effective, data_dir: Path, parent=None):
        super().__init__(parent)
        self.setWindowTitle("imgfinder settings")
        self.device = QComboBox()
        for name in ("auto", "cpu", "cuda", "mps"):
            ok = _device_available(name)
            self.device.addItem(name if ok else f"{name} (not available)", name)
            if not ok:
                model = self.device.model()
                if isinstance(model, QStandardItemModel):
                    model.item(self.device.count() - 1).setEnabled(False)
        self.device.setCurrentIndex(max(0, self.device.findData(effective.device)))
        self.input_size = QSpinBox()
        self.input_size.setRange(32, 1024)
        self.input_size.setSingleStep(32)
        self.input_size.setSuffix(" px")
        self.input_size.setValue(effective.input_size)
        self.input_size.setToolTip("Changing it changes the vectors: the library is re-indexed")
        self.backend = QComboBox()
        for name, text in BACKEND_TEXT.items():
            self.backend.addItem(text, name)
        self.backend.setCurrentIndex(max(0, self.backend.findData(effective.index_backend)))
        self.weights = QLineEdit(effective.weights or "")
        self.weights.setPlaceholderText(f"default: {default_weights_file()}")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        wrow = QHBoxLayout()
        wrow.addWidget(self.weights, 1)
        wrow.addWidget(browse)
        self.thumb_size = QSpinBox()
        self.thumb_size.setRange(THUMB_MIN, THUMB_MAX)
        self.thumb_size.setSingleStep(16)
        self.thumb_size.setSuffix(" px")
        self.thumb_size.setValue(settings.thumb_size)
        self.rescan = QSpinBox()
        self.rescan.setRange(1, 24 * 60)
        self.rescan.setSuffix(" min")
        self.rescan.setValue(settings.rescan_minutes)
        self.rescan.setToolTip("Folders that cannot be watched are rescanned this often")
        self.data_dir = QLineEdit(str(data_dir))
        self.data_dir.setReadOnly(True)
        open_dir = QPushButton("Open")
        open_dir.clicked.connect(lambda: desktop.open_path(str(data_dir)))
        drow = QHBoxLayout()
        drow.addWidget(self.data_dir, 1)
        drow.addWidget(open_dir)
        form = QFormLayout()
        form.addRow("&Device:", self.device)
        form.addRow("&Input size:", self.input_size)
        form.addRow("Index &backend:", self.backend)
        form.addRow("&Weights file:", _wrap(wrow))
        form.addRow("&Thumbnail size:", self.thumb_size)
        form.addRow("&Rescan interval:", self.rescan)
        form.addRow("Data folder:", _wrap(drow))
        note = QLabel(
            "The data folder holds the catalog, vectors, index, settings, logs and cache. "
            "Choose another one with --data-dir or IMGFINDER_DATA_DIR."
        )
        note.setWordWrap(True)
        note.setForegroundRole(note.foregroundRole())
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(note)
        lay.addWidget(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose ResNet50 weights", "", WEIGHTS_FILTER)
        if path:
            self.weights.setText(path)

    def values(self) -> dict:
        return {
            "device": self.device.currentData(),
            "input_size": self.input_size.value(),
            "index_backend": self.backend.currentData(),
            "weights": self.weights.text().strip() or None,
            "thumb_size": self.thumb_size.value(),
            "rescan_minutes": self.rescan.value(),
        }


def _wrap(layout) -> QWidget:
    w = QWidget()
    layout.setContentsMargins(0, 0, 0, 0)
    w.setLayout(layout)
    return w


class WeightsDialog(QDialog):
    """First run without weights: download with progress, or say which file to put where."""

    file_chosen = Signal(str)
    download_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Model weights needed")
        self.setMinimumWidth(520)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.choose_button = QPushButton("Choose weights &file…")
        self.download_button = QPushButton("&Download")
        self.cancel_button = QPushButton("&Cancel download")
        self.close_button = QPushButton("C&lose")
        self.choose_button.clicked.connect(self._choose)
        self.download_button.clicked.connect(self.download_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.close_button.clicked.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.choose_button)
        row.addWidget(self.download_button)
        row.addStretch(1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.close_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.message)
        lay.addWidget(self.progress)
        lay.addLayout(row)
        self.state = ""

    def show_downloading(self) -> None:
        self.state = "downloading"
        self.message.setText(
            "imgfinder needs ResNet50 weights (about 100 MB) and is downloading them once "
            f"to {default_weights_file()}."
        )
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.download_button.hide()
        self.choose_button.setEnabled(False)

    def set_progress(self, done: int, total: int | None) -> None:
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
            self.progress.setFormat(f"{done / 1e6:.1f} / {total / 1e6:.1f} MB")
        else:
            self.progress.setRange(0, 0)
            self.progress.setFormat(f"{done / 1e6:.1f} MB")

    def show_missing(self, message: str, *, can_download: bool = True) -> None:
        self.state = "missing"
        self.message.setText(message)
        self.progress.hide()
        self.cancel_button.hide()
        self.download_button.setVisible(can_download)
        self.download_button.setText("Try &download again")
        self.choose_button.setEnabled(True)

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose ResNet50 weights", "", WEIGHTS_FILTER)
        if path:
            self.use_file(path)

    def use_file(self, path: str) -> None:
        self.file_chosen.emit(path)
        self.accept()

"""Status bar widgets: indexing progress with pause/resume/cancel, device, library size, watching."""

from __future__ import annotations

import logging

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QToolButton, QWidget

from imgfinder.core.types import Progress, fmt_eta

log = logging.getLogger(__name__)


def progress_text(p: Progress, *, paused: bool = False) -> str:
    """The status bar's indexing line; paused, it gives no rate or ETA (nothing is moving)."""
    if p.stage == "scan":
        text = f"Scanning: {p.done:,} files found" if p.done else "Scanning folders…"
        return f"Paused · {text}" if paused else text
    if p.stage == "metadata":  # photos indexed before metadata was recorded
        return f"Reading photo metadata {p.done:,}/{p.total or 0:,}"
    total = p.total or 0
    if paused:
        return f"Paused · Indexing {p.done:,}/{total:,}"
    rate = f"{p.rate:.1f} images/s" if p.rate else "– images/s"
    return f"Indexing {p.done:,}/{total:,} · {rate} · ETA {fmt_eta(p.eta_s)}"


STOPPING_TEXT = "Stopping… (finishing the current batch; what is indexed is kept)"


class IndexProgress(QWidget):
    """Shown while indexing: a bar with count, rate and ETA, and pause/resume/cancel buttons."""

    pause_clicked = Signal()
    resume_clicked = Signal()
    cancel_clicked = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(True)
        self.pause_button = QToolButton()
        self.pause_button.setText("Pause")
        self.pause_button.setToolTip("Pause indexing")
        self.pause_button.clicked.connect(self._toggle)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop indexing; what is done is kept")
        self.cancel_button.clicked.connect(self.cancel_clicked)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.pause_button)
        lay.addWidget(self.cancel_button)
        self.paused = False
        self.stopping = False
        self.last: Progress | None = None
        self.hide()

    def set_progress(self, p: Progress) -> None:
        if p.stage == "scan" or not p.total:
            self.bar.setRange(0, 0)  # busy indicator while the total is unknown
        else:
            self.bar.setRange(0, p.total)
            self.bar.setValue(min(p.done, p.total))
            self.bar.setFormat(f"{p.done:,}/{p.total:,}")
        self.last = p
        if not self.stopping:
            self.label.setText(progress_text(p, paused=self.paused))

    def set_state(self, state: str) -> None:
        self.paused = state == "paused"
        self.stopping = state == "stopping"
        self.setVisible(state != "idle")
        self.pause_button.setText("Resume" if self.paused else "Pause")
        self.pause_button.setToolTip("Resume indexing" if self.paused else "Pause indexing")
        self.pause_button.setEnabled(state in ("running", "paused"))
        self.cancel_button.setEnabled(state in ("running", "paused"))
        if state == "running":
            self.label.setText("Indexing…")
            self.bar.setRange(0, 0)
        elif state == "cancelling":
            self.label.setText("Cancelling after this batch…")
        elif self.stopping:
            self.label.setText(STOPPING_TEXT)
        elif self.paused:
            self.label.setText(
                progress_text(self.last, paused=True) if self.last else "Paused · Indexing"
            )

    def _toggle(self) -> None:
        (self.resume_clicked if self.paused else self.pause_clicked).emit()

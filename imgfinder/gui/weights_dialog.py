"""Missing model weights: the dialog (download with progress, pick a file, or use the installed
backbone) and `WeightsPrompt`, the flow around it for the main window's library session."""

from __future__ import annotations

import re

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from imgfinder.core.modelspec import OFFLINE_BACKBONE, BackboneSpec, get_spec
from imgfinder.core.weights import default_available, default_weights_file, offline_message
from imgfinder.gui.model_files import WEIGHTS_FILTER

_OFFLINE_REASON = re.compile(r"weights are not available \((.*)\)\. Download", re.S)
_NETWORK_WORDS = (
    "errno",
    "name or service",
    "network",
    "timed out",
    "timeout",
    "connection",
    "unreachable",
    "getaddrinfo",
    "temporary failure",
    "ssl",
)


def weights_reason(message: str) -> str:
    """Why the weights are missing, in the app's words: no errno, no command-line advice.

    `message` is the core's text (core.weights.offline_message(), a download error, a file
    error), meant for the terminal.
    """
    m = _OFFLINE_REASON.search(message)
    reason = (m.group(1) if m else message).strip()
    low = reason.lower()
    if "cancel" in low:
        return "the download was cancelled"
    if "not downloaded yet" in low:
        return "they have not been downloaded yet"
    if low.startswith("download failed") or any(w in low for w in _NETWORK_WORDS):
        if "sha256" in low or "corrupt" in low:
            return "the downloaded file was damaged; try the download again"
        return "the download server could not be reached (is this computer offline?)"
    if low.startswith(("file not found:", "weights file not found:")):
        return f"the chosen weights file {reason.split(':', 1)[1].strip()} does not exist"
    # anything else (an unreadable file, say): its first sentence, without terminal advice
    reason = re.split(r"[,;]? or pass --weights|[,;]? or set IMGFINDER_WEIGHTS", reason)[0]
    return reason.rstrip(". ")


def weights_help_text(
    message: str, spec: BackboneSpec | None = None, alternative: BackboneSpec | None = None
) -> str:
    """The weights dialog's text: what is needed, why it is missing, what to do in the app."""
    spec = spec or get_spec(None)
    target = default_weights_file(spec)
    text = (
        f"imgfinder needs the {spec.title} model weights (about {spec.weights_mb} MB) to index "
        f"and search your photos, and {weights_reason(message)}.\n\n"
        "To get them: click “Try download again” when this computer is online; or, on a "
        f"computer with internet access, download\n{spec.weights_url}\nand copy the file "
        f"{target.name} into\n{target.parent}\nor click “Choose weights file…” to use a copy "
        "you already have."
    )
    if alternative is not None:
        text += (
            f"\n\nOr use {alternative.title} now: its ImageNet weights are installed with "
            "imgfinder, so it needs no download. It is a different model, so photos already "
            "indexed are indexed again (you are asked first)."
        )
    return text


class WeightsDialog(QDialog):
    """First run without weights: download with progress, pick a file, or use the backbone
    whose weights are installed (a different model, so never chosen without the user)."""

    file_chosen = Signal(str)
    backbone_chosen = Signal(str)
    download_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent=None, spec: BackboneSpec | None = None):
        super().__init__(parent)
        self.spec = spec or get_spec(None)
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
        alt = get_spec(OFFLINE_BACKBONE)
        self.alternative = alt if alt.name != self.spec.name and default_available(alt) else None
        self.alternative_button = QPushButton(f"&Use {alt.title} (installed)")
        self.alternative_button.setToolTip(
            f"{alt.label}. A different model: the library's photos are indexed again with it."
        )
        self.alternative_button.setVisible(False)
        self.choose_button.clicked.connect(self._choose)
        self.download_button.clicked.connect(self.download_requested)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.close_button.clicked.connect(self.reject)
        self.alternative_button.clicked.connect(self._use_alternative)
        row = QHBoxLayout()
        row.addWidget(self.choose_button)
        row.addWidget(self.download_button)
        row.addStretch(1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.close_button)
        alt_row = QHBoxLayout()  # its own row: beside four buttons its label was cut off
        alt_row.addWidget(self.alternative_button)
        alt_row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.message)
        lay.addWidget(self.progress)
        lay.addLayout(alt_row)
        lay.addLayout(row)
        self.state = ""

    def _use_alternative(self) -> None:
        if self.alternative is not None:
            self.backbone_chosen.emit(self.alternative.name)
            self.accept()

    def show_downloading(self) -> None:
        self.state = "downloading"
        self.message.setText(
            f"imgfinder needs {self.spec.title} weights (about {self.spec.weights_mb} MB) and "
            f"is downloading them once to {default_weights_file(self.spec)}."
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
        """`message`: the core's reason (any wording); the dialog says it in the app's terms."""
        self.state = "missing"
        self.message.setText(weights_help_text(message, self.spec, self.alternative))
        self.progress.hide()
        self.cancel_button.hide()
        self.download_button.setVisible(can_download)
        self.download_button.setText("Try &download again")
        self.choose_button.setEnabled(True)
        self.alternative_button.setVisible(self.alternative is not None)
        self.adjustSize()  # the text is longer than while downloading: it was cut off

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, f"Choose {self.spec.title} weights", "", WEIGHTS_FILTER
        )
        if path:
            self.use_file(path)

    def use_file(self, path: str) -> None:
        self.file_chosen.emit(path)
        self.accept()


class WeightsPrompt(QObject):
    """When the session needs weights: the dialog, the download it starts, and its end.

    A missing default is downloaded at once when that is allowed (online, no explicit file,
    no failed try before); otherwise the dialog explains and offers the alternatives. The
    session does the work (download, reopen with a file or another backbone).
    """

    status = Signal(str, int)  # a status-bar message (0: until replaced)
    gave_up = Signal()  # the dialog closed and there are still no weights

    def __init__(self, session, parent_widget):
        super().__init__(parent_widget)
        self.session = session
        self._parent = parent_widget
        self.dialog: WeightsDialog | None = None
        session.download_started.connect(lambda: self._call("show_downloading"))
        session.download_progress.connect(lambda d, t: self._call("set_progress", d, t))
        session.download_failed.connect(self._failed)
        session.downloaded.connect(lambda _path: self._call("accept"))

    def ask(self, message: str) -> None:
        """`message`: the core's reason the weights are missing."""
        dlg = self.dialog
        if dlg is None:
            dlg = self.dialog = WeightsDialog(self._parent, self.session.weights_spec())
            dlg.file_chosen.connect(self.session.use_weights_file)
            dlg.backbone_chosen.connect(self.session.use_backbone)
            dlg.download_requested.connect(self.start_download)
            dlg.cancel_requested.connect(self.cancel_download)
            dlg.finished.connect(self._closed)
        if self.session.may_download():
            self.start_download()
        else:
            dlg.show_missing(message, can_download=not self.session.opts.offline)
        dlg.open()

    def ask_again(self) -> None:
        """Library ▸ Get model weights…: the first-run dialog again (download or choose a file)."""
        if self.session.model_info is not None and self.session.weights_present():
            self.status.emit("The model weights are present and loaded.", 4000)
            return
        self.session.download_failed_once = False  # offer a fresh download
        self.ask(self.session.missing_weights_message(backbone=False))

    def start_download(self) -> None:
        if not self.session.start_download():
            self.status.emit("The previous download is still stopping…", 4000)

    def cancel_download(self) -> None:
        """Stop at the next chunk; the dialog says so at once (a stalled connect may take longer)."""
        if self.session.cancel_download():
            backbone = self.session.effective.backbone
            self._failed(offline_message("download cancelled", backbone))

    def shutdown(self) -> None:
        self.session.cancel_download(wait=True)

    def _call(self, name: str, *args) -> None:
        if self.dialog is not None:
            getattr(self.dialog, name)(*args)

    def _failed(self, message: str) -> None:
        if self.dialog is not None and self.dialog.state == "downloading":
            self.dialog.show_missing(message)

    def _closed(self, _code: int) -> None:
        self.cancel_download()
        self.dialog = None
        if self.session.model_info is None and not self.session.weights_present():
            self.status.emit(
                "No model weights: searching and indexing are off (File ▸ Settings ▸ Model).", 0
            )
            self.session.weights_missing_now = True
            self.gave_up.emit()

"""Dialogs: settings (persisted in the data dir) and missing model weights (download or pick)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from imgfinder.core.train import list_model_files
from imgfinder.core.weights import BUNDLE_FORMAT, DEFAULT_ENUM, default_weights_file
from imgfinder.core.whiten import Whitening, list_whitening_files, load_whitening
from imgfinder.errors import ImgfinderError
from imgfinder.gui import desktop
from imgfinder.gui.settings import (
    THUMB_MAX,
    THUMB_MIN,
    Effective,
    GuiSettings,
    candidate_model_id,
)

log = logging.getLogger(__name__)

BACKEND_TEXT = {
    "lsh": "lsh: fast approximate search (default)",
    "annoy": "annoy: approximate, rebuilt after changes",
    "exact": "exact: brute force, best for small libraries",
}
WEIGHTS_FILTER = "PyTorch weights (*.pth *.pt *.bin);;All files (*)"
DEFAULT_MODEL_TEXT = "ImageNet ResNet50 (default)"
KIND_TEXT = {
    "head": "trained head",
    "bundle": "trained weights",
    "backbone": "ResNet50 weights",
}
KIND_DESCRIPTION = {
    "head": "Trained ECA head (on top of the current backbone weights)",
    "bundle": "Trained weights bundle (layer4 and ECA head)",
    "backbone": "ResNet50 backbone weights",
}
TRAINED_TEXT = {"eca": "the ECA head", "layer4": "layer4 and the ECA head"}


def _device_available(name: str) -> bool:
    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps and mps.is_available())
    return True


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model list: what it sets in the ModelConfig, and how it is shown."""

    label: str
    weights: str | None
    head: str | None
    description: str


def _same_file(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def describe_model(kind: str, path: Path, meta: dict) -> str:
    """What was trained, on which dataset, at which input size and when (from the file's meta)."""
    lines = [f"{KIND_DESCRIPTION.get(kind, kind)}: {path}"]
    trained = meta.get("trained")
    if trained:
        text = f"Trained: {TRAINED_TEXT.get(trained, trained)}"
        if meta.get("unlabelled"):
            text += " (unlabelled: every photo its own class)"
        lines.append(text)
    if meta.get("dataset"):
        counts = [f"{meta[k]:,} {k}" for k in ("classes", "images") if isinstance(meta.get(k), int)]
        lines.append(f"Dataset: {meta['dataset']}" + (f" ({', '.join(counts)})" if counts else ""))
    if meta.get("input_size"):
        lines.append(f"Input size: {meta['input_size']} px")
    if meta.get("epochs"):
        text = f"Epochs: {meta['epochs']}"
        loss = meta.get("final_loss")
        if isinstance(loss, (int, float)):
            text += f", final loss {loss:.4f}"
        lines.append(text)
    if meta.get("created"):
        lines.append(f"Date: {str(meta['created']).replace('T', ' ')}")
    if meta.get("base_source"):
        lines.append(f"Started from: {meta['base_source']}")
    return "\n".join(lines)


def model_label(kind: str, path: Path, meta: dict) -> str:
    parts = [KIND_TEXT.get(kind, kind)]
    if meta.get("dataset"):
        parts.append(Path(str(meta["dataset"])).name)
    if meta.get("created"):
        parts.append(str(meta["created"])[:10])
    return f"{path.stem} ({' · '.join(parts)})"


def describe_whitening(path: Path, w: Whitening) -> str:
    return (
        f"PCA whitening: {path}\n{w.samples:,} vectors, {w.dim_in} → {w.dim_out} dimensions, "
        f"power {w.power:g}, shrinkage {w.shrinkage:g}\nLearned for model {w.model_id}"
    )


def classify_file(path: str) -> str:
    """ "head" or "weights" for a file picked by hand (unreadable: "weights", checked on load)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - loading the model reports the problem clearly
        return "weights"
    if isinstance(state, dict) and state.get("format") != BUNDLE_FORMAT:
        if isinstance(state.get("head"), dict) or "conv.weight" in state:
            return "head"
    return "weights"


class SettingsDialog(QDialog):
    """Device, input size, index backend, model and whitening, thumbnails, rescans, data folder."""

    def __init__(self, settings: GuiSettings, effective: Effective, data_dir: Path, parent=None):
        super().__init__(parent)
        self.setWindowTitle("imgfinder settings")
        self.effective = effective
        self.models_dir = Path(data_dir) / "models"
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
        model_group = self._build_model_group()
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
        form2 = QFormLayout()
        form2.addRow("&Thumbnail size:", self.thumb_size)
        form2.addRow("&Rescan interval:", self.rescan)
        form2.addRow("Data folder:", _wrap(drow))
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
        lay.addWidget(model_group)
        lay.addLayout(form2)
        lay.addWidget(note)
        lay.addWidget(buttons)

    # -- model and whitening ---------------------------------------------------------------
    def _build_model_group(self) -> QGroupBox:
        eff = self.effective
        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model.setMinimumContentsLength(36)
        self.model_choices: list[ModelChoice] = []
        self._add_model_choice(self._default_choice())
        for mf in list_model_files(self.models_dir):
            if mf.path.name == default_weights_file().name:
                continue  # the downloaded default: the first entry
            head = mf.kind == "head"
            self._add_model_choice(
                ModelChoice(
                    model_label(mf.kind, mf.path, mf.meta),
                    eff.weights if head else str(mf.path),
                    str(mf.path) if head else None,
                    describe_model(mf.kind, mf.path, mf.meta),
                )
            )
        if eff.weights and self._find_model(eff.weights, None) < 0:
            self._add_model_choice(self._file_choice(eff.weights, "weights"))
        if eff.head and self._find_model(eff.weights, eff.head) < 0:
            self._add_model_choice(self._file_choice(eff.head, "head"))
        self.model.setCurrentIndex(max(0, self._find_model(eff.weights, eff.head)))
        browse = QPushButton("Browse…")
        browse.setToolTip("Use a weights or head file from elsewhere")
        browse.clicked.connect(self._browse)
        mrow = QHBoxLayout()
        mrow.addWidget(self.model, 1)
        mrow.addWidget(browse)
        self.model_note = QLabel()
        self.model_note.setWordWrap(True)
        self.model_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.whitening = QComboBox()
        self.whitening.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.whitening.setMinimumContentsLength(36)
        self.whitening_note = QLabel()
        self.whitening_note.setWordWrap(True)
        self._whitening_files = self._whitening_candidates()
        self._whitening_choice = eff.whitening
        form = QFormLayout()
        form.addRow("&Model:", _wrap(mrow))
        form.addRow("", self.model_note)
        form.addRow("&Whitening:", self.whitening)
        form.addRow("", self.whitening_note)
        group = QGroupBox("Model")
        group.setToolTip(
            "The model and whitening determine the vectors: changing them re-indexes the "
            "library (you are asked first; it runs in the background)."
        )
        group.setLayout(form)
        self._model_changed()
        self.model.currentIndexChanged.connect(self._model_changed)
        self.whitening.currentIndexChanged.connect(self._whitening_picked)
        self.input_size.valueChanged.connect(self._refresh_whitening)
        return group

    def _default_choice(self) -> ModelChoice:
        desc = f"torchvision ResNet50 {DEFAULT_ENUM.name} weights, untrained ECA head"
        desc += f"\nFile: {default_weights_file()}"
        return ModelChoice(DEFAULT_MODEL_TEXT, None, None, desc)

    def _file_choice(self, path: str, kind: str) -> ModelChoice:
        name = Path(path).name
        if kind == "head":
            desc = f"{KIND_DESCRIPTION['head']}: {path}"
            return ModelChoice(f"Head file: {name}", self.effective.weights, path, desc)
        return ModelChoice(f"Weights file: {name}", path, None, f"Weights file: {path}")

    def _add_model_choice(self, choice: ModelChoice) -> int:
        self.model_choices.append(choice)
        i = self.model.count()
        self.model.addItem(choice.label, i)
        self.model.setItemData(i, choice.description, Qt.ItemDataRole.ToolTipRole)
        return i

    def _find_model(self, weights: str | None, head: str | None) -> int:
        for i, c in enumerate(self.model_choices):
            if _same_file(c.weights, weights) and _same_file(c.head, head):
                return i
        return -1

    def model_choice(self) -> ModelChoice:
        return self.model_choices[self.model.currentData()]

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose ResNet50 weights or a trained head", "", WEIGHTS_FILTER
        )
        if path:
            self.use_model_file(path)

    def use_model_file(self, path: str) -> None:
        """Add a weights or head file from anywhere to the list and select it."""
        kind = classify_file(path)
        i = self._find_model(*((self.effective.weights, path) if kind == "head" else (path, None)))
        if i < 0:
            i = self._add_model_choice(self._file_choice(path, kind))
        self.model.setCurrentIndex(i)

    def _model_changed(self) -> None:
        choice = self.model_choice()
        self.model.setToolTip(choice.description)
        self.model_note.setText(choice.description)
        self._refresh_whitening()

    def _whitening_candidates(self) -> list[tuple[Path, Whitening]]:
        found = list_whitening_files(None, self.models_dir)
        current = self.effective.whitening
        if current and not any(_same_file(str(p), current) for p, _ in found):
            try:  # a file from elsewhere (--whiten, or moved since)
                found.append((Path(current), load_whitening(current)))
            except ImgfinderError as exc:
                log.warning("settings: %s", exc)
        return found

    def current_model_id(self) -> str | None:
        """The raw model id of the chosen model and input size (None if it cannot be told)."""
        choice = self.model_choice()
        return candidate_model_id(choice.weights, choice.head, self.input_size.value())

    def _whitening_picked(self) -> None:
        if not self._refreshing:
            self._whitening_choice = self.whitening.currentData()

    _refreshing = False

    def _refresh_whitening(self) -> None:
        """Off plus the whitening files learned for the chosen model, keeping the choice."""
        model_id = self.current_model_id()
        wanted = self._whitening_choice
        self._refreshing = True
        try:
            self.whitening.clear()
            self.whitening.addItem("Off", None)
            self.whitening.setItemData(
                0, "Search with the model's own vectors", Qt.ItemDataRole.ToolTipRole
            )
            selected = 0
            for path, w in self._whitening_files:
                if model_id is not None and w.model_id != model_id:
                    continue
                if model_id is None and not _same_file(str(path), wanted):
                    continue  # model unknown (e.g. no weights yet): only keep the current one
                i = self.whitening.count()
                self.whitening.addItem(f"{path.name} ({w.dim_out} dims)", str(path))
                self.whitening.setItemData(
                    i, describe_whitening(path, w), Qt.ItemDataRole.ToolTipRole
                )
                if _same_file(str(path), wanted):
                    selected = i
            self.whitening.setCurrentIndex(selected)
        finally:
            self._refreshing = False
        n = self.whitening.count() - 1
        if wanted and selected == 0:
            note = f"{Path(wanted).name} was learned for another model: whitening is off."
        elif n:
            note = f"{n} whitening file(s) learned for this model (imgfinder whiten)."
        else:
            note = "No whitening learned for this model (imgfinder whiten)."
        self.whitening_note.setText(note)

    def values(self) -> dict:
        choice = self.model_choice()
        return {
            "device": self.device.currentData(),
            "input_size": self.input_size.value(),
            "index_backend": self.backend.currentData(),
            "weights": choice.weights,
            "head": choice.head,
            "whitening": self.whitening.currentData(),
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

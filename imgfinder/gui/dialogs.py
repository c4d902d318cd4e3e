"""Dialogs: settings (persisted in the data dir) and missing model weights (download or pick)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import shiboken6
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
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

from imgfinder.core.modelspec import (
    BACKBONES,
    DEFAULT_BACKBONE,
    INPUT_SIZE_RANGE,
    OFFLINE_BACKBONE,
    BackboneSpec,
    get_spec,
)
from imgfinder.core.train import list_model_files
from imgfinder.core.weights import classify_state, default_available, default_weights_file
from imgfinder.core.whiten import (
    DEFAULT_DIM,
    LearningCancelled,
    Whitening,
    default_dim,
    learn_from_library,
    list_whitening_files,
    load_whitening,
    save_whitening,
)
from imgfinder.errors import ImgfinderError
from imgfinder.gui import desktop
from imgfinder.gui.settings import (
    THUMB_MAX,
    THUMB_MIN,
    Effective,
    GuiSettings,
    candidate_model_id,
)

if TYPE_CHECKING:
    from imgfinder.core.library import Library
    from imgfinder.gui.workers import TaskRunner

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
    "backbone": "backbone weights",
}
KIND_DESCRIPTION = {
    "head": "Trained ECA head (on top of the current backbone weights)",
    "bundle": "Trained weights bundle (last stage and ECA head)",
    "backbone": "Backbone weights",
}
TRAINED_TEXT = {"eca": "the ECA head", "layer4": "the last stage and the ECA head"}
LEARN_DIM_MIN = 16  # D' offered for a whitening learned in the app (the CLI takes any)
LEARN_TEXT = "Learn from library…"


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
    backbone: str = DEFAULT_BACKBONE


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


def default_model_text(spec: BackboneSpec) -> str:
    text = f"ImageNet {spec.title}"
    if spec.name == DEFAULT_BACKBONE:
        return text + " (default)"
    if spec.weights_package:
        return text + " (installed, no download)"
    return text


def _load_any(path: str) -> dict | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - loading the model reports the problem clearly
        return None
    return state if isinstance(state, dict) else None


def classify_file(path: str) -> str:
    """ "head" or "weights" for a file picked by hand (unreadable: "weights", checked on load)."""
    state = _load_any(path)
    return "head" if state is not None and classify_state(state)[0] == "head" else "weights"


def backbone_of_file(path: str, meta: dict | None = None) -> str | None:
    """Which backbone a weights, bundle or head file belongs to (None: cannot tell)."""
    meta = meta or {}
    if meta.get("backbone") in BACKBONES:
        return meta["backbone"]
    state = _load_any(path)
    arch = classify_state(state)[1] if state is not None else None
    return arch if arch in BACKBONES else None


class SettingsDialog(QDialog):
    """Device, input size, index backend, model and whitening, thumbnails, rescans, data folder.

    With `library` (returns the open Library) and `tasks`, it can also learn a whitening from
    the library in the background (see `start_learning`).
    """

    def __init__(
        self,
        settings: GuiSettings,
        effective: Effective,
        data_dir: Path,
        parent=None,
        *,
        library: Callable[[], Library | None] | None = None,
        tasks: TaskRunner | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("imgfinder settings")
        self.effective = effective
        self.models_dir = Path(data_dir) / "models"
        self._library = library
        self._tasks = tasks
        self._learn_cancel: threading.Event | None = None  # set while learning; the run's token
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
        self.input_size.setRange(*INPUT_SIZE_RANGE)
        self.input_size.setSingleStep(32)
        self.input_size.setSuffix(" px")
        self.input_size.setValue(effective.input_size)
        self.input_size.setToolTip("Changing it changes the vectors: the library is re-indexed")
        self.backend = QComboBox()
        for name, text in BACKEND_TEXT.items():
            self.backend.addItem(text, name)
        self.backend.setCurrentIndex(max(0, self.backend.findData(effective.index_backend)))
        self._build_retrieval_widgets(settings, effective)
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
        self.raw_pairs = QCheckBox("Show a RAW+JPEG &pair as one photo in search results")
        self.raw_pairs.setToolTip(
            "A camera's RAW file and the JPEG it wrote of the same shot (same name, or same "
            "capture time and camera) appear once, as the better match of the two"
        )
        self.raw_pairs.setChecked(bool(settings.raw_pairs_as_one))
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
        form2.addRow("", self.raw_pairs)
        form2.addRow("Search &re-ranking:", self.rerank)
        form2.addRow("Data folder:", _wrap(drow))
        note = QLabel(
            "The data folder holds the catalog, vectors, index, settings, logs and cache. "
            "To use another one, start imgfinder with --data-dir FOLDER or set "
            "IMGFINDER_DATA_DIR."
        )
        note.setWordWrap(True)
        note.setForegroundRole(note.foregroundRole())
        self.buttons = buttons = QDialogButtonBox(
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
        # Enter means OK: Browse…, Open, Learn… never become the default after a click
        ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        for b in self.findChildren(QPushButton):
            b.setAutoDefault(b is ok)
        ok.setDefault(True)
        self._load_vector_count()

    # -- model and whitening ---------------------------------------------------------------
    def _build_model_group(self) -> QGroupBox:
        eff = self.effective
        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model.setMinimumContentsLength(36)
        self.model_choices: list[ModelChoice] = []
        for spec in BACKBONES.values():
            self._add_model_choice(self._default_choice(spec))
        defaults = {spec.weights_file for spec in BACKBONES.values()}
        current = get_spec(eff.backbone).name
        for mf in list_model_files(self.models_dir):
            if mf.path.name in defaults:
                continue  # a downloaded default: one of the first entries
            head = mf.kind == "head"
            backbone = backbone_of_file(str(mf.path), mf.meta) or DEFAULT_BACKBONE
            self._add_model_choice(
                ModelChoice(
                    model_label(mf.kind, mf.path, mf.meta),
                    eff.weights if head and backbone == current else None if head else str(mf.path),
                    str(mf.path) if head else None,
                    describe_model(mf.kind, mf.path, mf.meta)
                    + f"\nBackbone: {BACKBONES[backbone].title}",
                    backbone,
                )
            )
        if eff.weights and self._find_model(eff.weights, None, current) < 0:
            self._add_model_choice(self._file_choice(eff.weights, "weights"))
        if eff.head and self._find_model(eff.weights, eff.head, current) < 0:
            self._add_model_choice(self._file_choice(eff.head, "head"))
        self.model.setCurrentIndex(max(0, self._find_model(eff.weights, eff.head, current)))
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
        learn_row = self._build_learn_row()
        form = QFormLayout()
        form.addRow("&Model:", _wrap(mrow))
        form.addRow("", self.model_note)
        form.addRow("&Attention:", self.attention)
        form.addRow("&Pooling:", self.pooling)
        form.addRow("&Whitening:", self.whitening)
        form.addRow("", learn_row)
        form.addRow("", self.whitening_note)
        form.setRowVisible(learn_row, self.can_learn)
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

    def _build_learn_row(self) -> QWidget:
        eff = self.effective
        # the raw model id of the open library: learning reads its vectors of that model
        self._library_model_id = candidate_model_id(
            eff.weights, eff.head, eff.input_size, eff.backbone
        )
        dim = get_spec(eff.backbone).descriptor_dim
        self.learn_dim = QSpinBox()
        self.learn_dim.setRange(LEARN_DIM_MIN, dim)
        self.learn_dim.setSingleStep(16)
        self.learn_dim.setSuffix(" dims")
        self.learn_dim.setValue(min(DEFAULT_DIM, dim))
        self._initial_learn_dim = self.learn_dim.value()
        self.learn_dim.setToolTip(
            "Output dimension D′ of the whitening to learn. It is capped at the number of "
            "indexed photos − 1; with fewer than ~4 photos per dimension the weakest "
            "dimensions are mostly noise."
        )
        self.learn_button = QPushButton(LEARN_TEXT)
        self.learn_button.clicked.connect(lambda: self.start_learning())
        self.learn_busy = QProgressBar()
        self.learn_busy.setRange(0, 0)  # busy indicator: the eigendecomposition has no steps
        self.learn_busy.setTextVisible(False)
        self.learn_busy.setMaximumWidth(120)
        self.learn_busy.hide()
        dim_label = QLabel("D′:")
        dim_label.setBuddy(self.learn_dim)
        row = QHBoxLayout()
        row.addWidget(dim_label)
        row.addWidget(self.learn_dim)
        row.addWidget(self.learn_button)
        row.addWidget(self.learn_busy)
        row.addStretch(1)
        return _wrap(row)

    @property
    def can_learn(self) -> bool:
        """Whether this dialog was given a library and a task runner to learn a whitening."""
        return self._library is not None and self._tasks is not None

    def _default_choice(self, spec: BackboneSpec) -> ModelChoice:
        desc = f"{spec.label}: ImageNet weights, untrained ECA head ({spec.descriptor_dim}-d)"
        if spec.weights_package:
            desc += f"\nInstalled with the Python package {spec.pip_name}"
            if not default_available(spec):
                desc += " — not installed: this model cannot be used"
        else:
            target = default_weights_file(spec)
            desc += f"\nFile: {target}"
            if not target.is_file():
                desc += (
                    f"\n⚠ Missing: not downloaded yet. imgfinder downloads it "
                    f"({spec.weights_mb} MB) when this model is first used online, or choose a "
                    "file with Browse…"
                )
        return ModelChoice(default_model_text(spec), None, None, desc, spec.name)

    def _file_choice(self, path: str, kind: str) -> ModelChoice:
        name = Path(path).name
        backbone = backbone_of_file(path) or get_spec(self.effective.backbone).name
        if kind == "head":
            desc = f"{KIND_DESCRIPTION['head']}: {path}"
            same = backbone == get_spec(self.effective.backbone).name
            weights = self.effective.weights if same else None
            return ModelChoice(f"Head file: {name}", weights, path, desc, backbone)
        desc = f"Weights file: {path}\nBackbone: {BACKBONES[backbone].title}"
        if not Path(path).expanduser().is_file():
            desc += "\n⚠ Missing: this file does not exist (moved or deleted?)"
        return ModelChoice(f"Weights file: {name}", path, None, desc, backbone)

    def _add_model_choice(self, choice: ModelChoice) -> int:
        self.model_choices.append(choice)
        i = self.model.count()
        self.model.addItem(choice.label, i)
        self.model.setItemData(i, choice.description, Qt.ItemDataRole.ToolTipRole)
        return i

    def _find_model(
        self, weights: str | None, head: str | None, backbone: str | None = None
    ) -> int:
        backbone = get_spec(backbone).name
        for i, c in enumerate(self.model_choices):
            same = _same_file(c.weights, weights) and _same_file(c.head, head)
            if same and c.backbone == backbone:
                return i
        return -1

    def model_choice(self) -> ModelChoice:
        return self.model_choices[self.model.currentData()]

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose backbone weights or a trained head", "", WEIGHTS_FILTER
        )
        if path:
            self.use_model_file(path)

    def use_model_file(self, path: str) -> None:
        """Add a weights or head file from anywhere to the list and select it."""
        kind = classify_file(path)
        choice = self._file_choice(path, kind)
        i = self._find_model(choice.weights, choice.head, choice.backbone)
        if i < 0:
            i = self._add_model_choice(choice)
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
        return candidate_model_id(
            choice.weights,
            choice.head,
            self.input_size.value(),
            choice.backbone,
            self.attention.currentData(),
            self.pooling.currentData(),
        )

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
        elif self.can_learn:
            note = "No whitening learned for this model: learn one from the library above."
        else:
            note = "No whitening learned for this model (imgfinder whiten)."
        self.whitening_note.setText(note)
        self._update_learn_state()

    # -- learning a whitening ----------------------------------------------------------------
    def _update_learn_state(self) -> None:
        """Learning is offered for the model in use only: its vectors are the library's."""
        if self._learn_cancel is not None:
            return  # busy: _set_learning(False) calls this again
        model_id = self.current_model_id()
        ok = self.can_learn and model_id is not None and model_id == self._library_model_id
        self.learn_button.setEnabled(ok)
        self.learn_dim.setEnabled(ok)
        self.learn_button.setToolTip(
            "Learn a PCA whitening from the vectors of the indexed photos, in the background "
            "(like imgfinder whiten); OK then uses it and offers a re-index"
            if ok
            else "Learning reads the library's vectors of the model in use: choose that model "
            "and input size (or apply this one and re-index first)"
        )

    def _load_vector_count(self) -> None:
        """Default D' by the core's rule, once the library's photo count is known."""
        lib = self._library() if self.can_learn else None
        if lib is None:
            return
        self._tasks.run(lib.catalog.model_counts, self._vector_count_loaded)

    def _vector_count_loaded(self, counts: dict[str, int]) -> None:
        if not shiboken6.isValid(self) or self.learn_dim.value() != self._initial_learn_dim:
            return  # the dialog is gone, or D' was already chosen by hand
        n = counts.get(self._library_model_id or "", 0)
        if n:
            self.learn_dim.setValue(max(LEARN_DIM_MIN, default_dim(n)))
            self._initial_learn_dim = self.learn_dim.value()

    def start_learning(self, dim: int | None = None) -> None:
        """Learn a D'-dim whitening from the library off the GUI thread; saved, then selected.

        `dim` None: the D' box's value. The result is dropped if the dialog closed meanwhile.
        """
        if not self.can_learn or self._learn_cancel is not None:
            return
        lib = self._library()
        if lib is None:
            self.whitening_note.setText("Cannot learn a whitening: no library is open.")
            return
        dim = int(dim or self.learn_dim.value())
        models = self.models_dir
        cancel = threading.Event()

        def work() -> tuple[Whitening, Path]:  # in a pool thread: no widgets here
            w = learn_from_library(lib, dim, cancel=cancel)
            if cancel.is_set():
                raise LearningCancelled("learning the whitening was cancelled")
            return w, save_whitening(w, models / w.file_name)

        self._learn_cancel = cancel
        self._set_learning(True)
        self.whitening_note.setText(
            f"Learning a {dim}-dimension whitening from the library's vectors…"
        )
        self._tasks.run(
            work,
            lambda result: self._learned(cancel, dim, *result),
            lambda message: self._learn_failed(cancel, message),
        )

    def _current_run(self, cancel: threading.Event) -> bool:
        """A result belongs to the run in progress and the dialog still exists."""
        return shiboken6.isValid(self) and self._learn_cancel is cancel

    def _learned(self, cancel: threading.Event, dim: int, w: Whitening, path: Path) -> None:
        if not self._current_run(cancel):
            return
        self._learn_cancel = None
        self._set_learning(False)
        self._whitening_files = self._whitening_candidates()
        self._whitening_choice = str(path)
        self._refresh_whitening()
        if self.whitening.currentData() != str(path):
            return  # another model was chosen meanwhile: the refresh's note says so
        note = f"Learned {path.name} from {w.samples:,} vectors: {w.dim_in} → {w.dim_out} dims"
        if w.dim_out < dim:
            note += f" (asked for {dim}; at most one less than the vectors)"
        note += ". OK uses it (a re-index is offered)."
        if w.samples < 4 * w.dim_out:
            note += " With fewer than 4 vectors per dimension the weakest ones are mostly noise."
        self.whitening_note.setText(note)

    def _learn_failed(self, cancel: threading.Event, message: str) -> None:
        if not self._current_run(cancel):
            return
        self._learn_cancel = None
        self._set_learning(False)
        self.whitening_note.setText(f"Cannot learn a whitening: {message}")

    def _set_learning(self, busy: bool) -> None:
        """Busy: the button says so, a busy bar runs, OK waits (Cancel stops the learning)."""
        self.learn_busy.setVisible(busy)
        self.learn_button.setText("Learning…" if busy else LEARN_TEXT)
        self.learn_button.setEnabled(not busy)
        self.learn_dim.setEnabled(not busy)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not busy)
        if not busy:
            self._update_learn_state()

    @property
    def learning(self) -> bool:
        return self._learn_cancel is not None

    def cancel_learning(self) -> None:
        """Stop a run: nothing is saved after the current step, and its result is dropped."""
        if self._learn_cancel is not None:
            self._learn_cancel.set()
            self._learn_cancel = None
            self._set_learning(False)

    def done(self, result: int) -> None:
        self.cancel_learning()
        super().done(result)

    def values(self) -> dict:
        choice = self.model_choice()
        return {
            "backbone": choice.backbone,
            "device": self.device.currentData(),
            "input_size": self.input_size.value(),
            "index_backend": self.backend.currentData(),
            "weights": choice.weights,
            "head": choice.head,
            "whitening": self.whitening.currentData(),
            "thumb_size": self.thumb_size.value(),
            "rescan_minutes": self.rescan.value(),
            "raw_pairs_as_one": self.raw_pairs.isChecked(),
            **self.retrieval_values(),
        }

    # -- attention, pooling and search re-ranking (issue 18) ------------------------------
    def _build_retrieval_widgets(self, settings: GuiSettings, effective: Effective) -> None:
        """Three combo boxes: the attention head and second-branch pooling (each its own
        model: the library is re-indexed), and how search re-ranks its top results."""
        from imgfinder.core.rerank import METHOD_LABELS  # noqa: PLC0415

        self.attention = QComboBox()
        self.attention.addItem("ECA (the fused-ECA paper's)", None)
        self.attention.addItem("CBAM (channel + spatial attention)", "cbam")
        self.attention.setCurrentIndex(max(0, self.attention.findData(effective.attention)))
        self.attention.setToolTip("Changing it changes the vectors: the library is re-indexed")
        self.pooling = QComboBox()
        self.pooling.addItem("max pooling (the paper's)", None)
        self.pooling.addItem("GeM, p = 3 (learnt by training)", "gem")
        self.pooling.setCurrentIndex(max(0, self.pooling.findData(effective.pooling)))
        self.pooling.setToolTip("Changing it changes the vectors: the library is re-indexed")
        self.rerank = QComboBox()
        for key in ("", "aqe", "dba+aqe", "diffusion", "verify", "dba+aqe,verify",
                    "diffusion,verify"):  # fmt: skip
            label = " + ".join(METHOD_LABELS[m] for m in key.split(",")) if key else "none"
            self.rerank.addItem(label, key)
        self.rerank.setCurrentIndex(max(0, self.rerank.findData(settings.rerank or "")))
        self.rerank.setToolTip(
            "Re-orders the first results of every search; local verification compares "
            "keypoints of the query and each of the first 20 photos (same object or scene); "
            "diffusion first builds a graph of the whole library (once per session)"
        )

    def retrieval_values(self) -> dict:
        return {
            "attention": self.attention.currentData(),
            "pooling": self.pooling.currentData(),
            "rerank": self.rerank.currentData() or "",
        }


def _wrap(layout) -> QWidget:
    w = QWidget()
    layout.setContentsMargins(0, 0, 0, 0)
    w.setLayout(layout)
    return w


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
        row.addWidget(self.alternative_button)
        row.addStretch(1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.close_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.message)
        lay.addWidget(self.progress)
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

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, f"Choose {self.spec.title} weights", "", WEIGHTS_FILTER
        )
        if path:
            self.use_file(path)

    def use_file(self, path: str) -> None:
        self.file_chosen.emit(path)
        self.accept()

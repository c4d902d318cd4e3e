"""The settings dialog: device, input size, index, model and whitening, thumbnails, rescans.

The model entries come from `model_files`, learning a whitening from `whitening_learner`;
the values are persisted by the main window (`GuiSettings`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import Qt
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

from imgfinder.config import DEVICES, INPUT_SIZE_RANGE
from imgfinder.core.modelspec import BACKBONES, DEFAULT_BACKBONE, BackboneSpec, get_spec
from imgfinder.core.torchinfo import device_available
from imgfinder.core.weights import default_available, default_weights_file
from imgfinder.gui import desktop
from imgfinder.gui.model_files import (
    KIND_DESCRIPTION,
    WEIGHTS_FILTER,
    ModelChoice,
    backbone_of_file,
    classify_file,
    default_model_text,
    describe_model,
    model_label,
    same_file,
)
from imgfinder.gui.settings import (
    THUMB_MAX,
    THUMB_MIN,
    Effective,
    GuiSettings,
    candidate_model_id,
)
from imgfinder.gui.whitening_learner import (
    LEARN_DIM_MIN,
    WhiteningLearner,
    default_learn_dim,
    describe_whitening,
    learn_dim_for,
    learn_tooltips,
    whitening_files,
)

if TYPE_CHECKING:
    from imgfinder.core.library import Library
    from imgfinder.core.whiten import Whitening
    from imgfinder.gui.workers import TaskRunner

log = logging.getLogger(__name__)

BACKEND_TEXT = {
    "lsh": "lsh: fast approximate search (default)",
    "annoy": "annoy: approximate, rebuilt after changes",
    "exact": "exact: brute force, best for small libraries",
}
LEARN_TEXT = "Learn from library…"
LEARN_CLASSES_TEXT = "Learn from class folders…"


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
        self.learner = WhiteningLearner(library, tasks, self.models_dir, self)
        self.learner.learned.connect(self._learned)
        self.learner.failed.connect(self._learn_failed)
        self.device = QComboBox()
        for name in DEVICES:
            ok = device_available(name)
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
        from imgfinder.core.train import list_model_files  # noqa: PLC0415 (lazy: torch)

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
        self.learn_dim.setValue(default_learn_dim(dim))
        self._initial_learn_dim = self.learn_dim.value()
        self.learn_dim.setToolTip(
            "Output dimension D′ of the whitening to learn. It is capped at the number of "
            "indexed photos − 1; with fewer than ~4 photos per dimension the weakest "
            "dimensions are mostly noise."
        )
        self.learn_button = QPushButton(LEARN_TEXT)
        self.learn_button.clicked.connect(lambda: self.start_learning())
        self.learn_classes_button = QPushButton(LEARN_CLASSES_TEXT)
        self.learn_classes_button.clicked.connect(self._pick_class_folders)
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
        row.addWidget(self.learn_classes_button)
        row.addWidget(self.learn_busy)
        row.addStretch(1)
        return _wrap(row)

    @property
    def can_learn(self) -> bool:
        """Whether this dialog was given a library and a task runner to learn a whitening."""
        return self.learner.available

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
            same = same_file(c.weights, weights) and same_file(c.head, head)
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
        return whitening_files(self.models_dir, self.effective.whitening)

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
                if model_id is None and not same_file(str(path), wanted):
                    continue  # model unknown (e.g. no weights yet): only keep the current one
                i = self.whitening.count()
                self.whitening.addItem(f"{path.name} ({w.dim_out} dims)", str(path))
                self.whitening.setItemData(
                    i, describe_whitening(path, w), Qt.ItemDataRole.ToolTipRole
                )
                if same_file(str(path), wanted):
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
        if self.learner.running:
            return  # busy: _set_learning(False) calls this again
        model_id = self.current_model_id()
        ok = self.can_learn and model_id is not None and model_id == self._library_model_id
        library_tip, classes_tip = learn_tooltips(ok)
        for widget, tip in (
            (self.learn_button, library_tip),
            (self.learn_classes_button, classes_tip),
        ):
            widget.setEnabled(ok)
            widget.setToolTip(tip)
        self.learn_dim.setEnabled(ok)

    def _load_vector_count(self) -> None:
        """Default D' by the core's rule, once the library's photo count is known."""
        self.learner.count_vectors(self._vector_count_loaded)

    def _vector_count_loaded(self, counts: dict[str, int]) -> None:
        if not shiboken6.isValid(self) or self.learn_dim.value() != self._initial_learn_dim:
            return  # the dialog is gone, or D' was already chosen by hand
        n = counts.get(self._library_model_id or "", 0)
        if n:
            self.learn_dim.setValue(learn_dim_for(n))
            self._initial_learn_dim = self.learn_dim.value()

    def _pick_class_folders(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Folder with one sub-folder of photos per class", str(Path.home())
        )
        if folder:
            self.start_learning(classes=folder)

    def start_learning(self, dim: int | None = None, classes: str | None = None) -> None:
        """Learn a D'-dim whitening off the GUI thread; saved, then selected. From the
        library's vectors, or with `classes` (a folder per class) a supervised whitening.

        `dim` None: the D' box's value. The result is dropped if the dialog closed meanwhile.
        """
        if not self.can_learn or self.learner.running:
            return
        lib = self.learner.library()
        if lib is None:
            self.whitening_note.setText("Cannot learn a whitening: no library is open.")
            return
        dim = int(dim or self.learn_dim.value())
        self.learner.start(lib, dim, classes)
        self._set_learning(True)
        source = f"the photos in {classes}" if classes else "the library's vectors"
        self.whitening_note.setText(f"Learning a {dim}-dimension whitening from {source}…")

    def _learned(self, w: Whitening, path: Path, dim: int) -> None:
        if not shiboken6.isValid(self):
            return
        self._set_learning(False)
        self._whitening_files = self._whitening_candidates()
        self._whitening_choice = str(path)
        self._refresh_whitening()
        if self.whitening.currentData() != str(path):
            return  # another model was chosen meanwhile: the refresh's note says so
        source = (
            f"{w.samples:,} photos in {w.classes} classes"
            if w.kind == "supervised"
            else f"{w.samples:,} vectors"
        )
        note = f"Learned {path.name} from {source}: {w.dim_in} → {w.dim_out} dims"
        if w.dim_out < dim:
            note += f" (asked for {dim}; at most one less than the vectors)"
        note += ". OK uses it (a re-index is offered)."
        if w.samples < 4 * w.dim_out:
            note += " With fewer than 4 vectors per dimension the weakest ones are mostly noise."
        self.whitening_note.setText(note)

    def _learn_failed(self, message: str) -> None:
        if not shiboken6.isValid(self):
            return
        self._set_learning(False)
        self.whitening_note.setText(f"Cannot learn a whitening: {message}")

    def _set_learning(self, busy: bool) -> None:
        """Busy: the button says so, a busy bar runs, OK waits (Cancel stops the learning)."""
        self.learn_busy.setVisible(busy)
        self.learn_button.setText("Learning…" if busy else LEARN_TEXT)
        self.learn_button.setEnabled(not busy)
        self.learn_classes_button.setEnabled(not busy)
        self.learn_dim.setEnabled(not busy)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not busy)
        if not busy:
            self._update_learn_state()

    @property
    def learning(self) -> bool:
        return self.learner.running

    def cancel_learning(self) -> None:
        """Stop a run: nothing is saved after the current step, and its result is dropped."""
        if self.learner.running:
            self.learner.cancel()
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

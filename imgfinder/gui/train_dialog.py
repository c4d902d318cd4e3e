"""Library ▸ Train model: ArcFace fine-tuning (`imgfinder train`) in a worker thread.

The dialog is non-modal: the run goes on while the user searches. Cancelling stops after
the current batch with a checkpoint, which Resume continues; a finished run's file can be
switched to at once ("Use this model"), which reopens the library and offers a re-index.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    QCoreApplication,
    QEvent,
    QObject,
    QRunnable,
    Qt,
    QThread,
    QThreadPool,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from imgfinder.core import scan
from imgfinder.core.types import Progress, fmt_eta
from imgfinder.gui.workers import TrainWorker, dispose, stop_and_wait, worker_thread

if TYPE_CHECKING:  # core.train imports torch: loaded when the dialog is first built
    from imgfinder.core.train import TrainConfig, TrainResult

log = logging.getLogger(__name__)

WHAT_TEXT = {
    "layer4": "layer4 + ECA (recommended)",
    "eca": "ECA only (fast)",
}
LABELLED_TEXT = "Labelled (one sub-folder per class)"
UNLABELLED_TEXT = "Adapt to these photos (no labels)"
# README / benchmarks/training.py: labelled training was best after 3-4 epochs; unlabelled
# ("adapt") training peaked at 14-22 epochs and declined after
DEFAULT_EPOCHS = {"labelled": 4, "unlabelled": 15}


def folder_summary(folder: str, cancel: threading.Event | None = None) -> dict:
    """What training on `folder` would use: photos per class sub-folder, loose photos."""
    root = Path(folder).expanduser()
    per_class: dict[str, int] = {}
    loose = total = 0
    if not root.is_dir():
        return {"exists": False, "classes": {}, "loose": 0, "photos": 0}
    for f in scan.iter_image_files([root], cancel=cancel):
        total += 1
        parts = f.relative_to(root).parts
        if len(parts) < 2:
            loose += 1
        else:
            per_class[parts[0]] = per_class.get(parts[0], 0) + 1
    return {"exists": True, "classes": per_class, "loose": loose, "photos": total}


def folder_text(summary: dict, unlabelled: bool) -> str:
    """The dialog's line about the chosen folder: classes and photos, and what looks wrong."""
    if not summary["exists"]:
        return "That folder does not exist."
    n = summary["photos"]
    if unlabelled:
        return f"{n:,} photos; each is its own class." if n else "No photos in that folder."
    classes = summary["classes"]
    parts = [f"{len(classes):,} classes (sub-folders), {n - summary['loose']:,} photos"]
    # far fewer photos than the others: probably a stray folder, not a class
    limit = max(2.0, statistics.median(classes.values()) / 3) if classes else 0
    small = sorted((c for c, k in classes.items() if k < limit), key=lambda c: (classes[c], c))
    if small:
        names = ", ".join(f"{c}/ ({classes[c]})" for c in small[:3])
        more = f" and {len(small) - 3} more" if len(small) > 3 else ""
        parts.append(f"⚠ few photos in {names}{more}: each sub-folder becomes a class")
    if summary["loose"]:
        parts.append(f"{summary['loose']:,} photos outside sub-folders are not used")
    if len(classes) < 2:
        parts.append("⚠ needs at least two class sub-folders, or choose “Adapt to these photos”")
    return " · ".join(parts)


class _SummarySignals(QObject):
    done = Signal(int, object)


class _SummaryJob(QRunnable):
    def __init__(self, token: int, folder: str, signals: _SummarySignals, cancel):
        super().__init__()
        self.token, self.folder, self.signals, self.cancel = token, folder, signals, cancel

    def run(self) -> None:
        try:
            self.signals.done.emit(self.token, folder_summary(self.folder, self.cancel))
        except Exception:  # noqa: BLE001 - a worker must not take the app down
            log.exception("counting the training folder failed")


# the core's messages name CLI options; say what they are called here
CLI_WORDS = {
    "--unlabelled": f"“{UNLABELLED_TEXT}”",
    "without --resume": "with Start",
}


def gui_message(message: str) -> str:
    for cli, gui in CLI_WORDS.items():
        message = message.replace(cli, gui)
    return message


def progress_text(p: Progress) -> str:
    """One line for a training Progress: the stage, epoch and loss, rate and ETA."""
    eta = f"ETA {fmt_eta(p.eta_s)}"
    if p.stage == "cache":
        return f"Preparing: features of {p.done:,}/{p.total or 0:,} photos · {eta}"
    if p.stage == "calibrate":
        return f"Re-estimating BatchNorm statistics {p.done:,}/{p.total or 0:,}"
    if getattr(p, "loss", None) is not None:  # a TrainProgress with a loss
        loss = f"epoch {p.epoch}/{p.epochs} loss {p.loss:.3f}"
        if p.stage == "epoch":
            return f"Training: {loss} (epoch done)"
        rate = f" · {p.rate:.1f} photos/s" if p.rate else ""
        return f"Training: {loss}{rate} · {eta}"
    return p.message or p.stage


def summary_text(cfg: TrainConfig, result: TrainResult) -> str:
    """What a finished run did (loss first → last, s/epoch) and where it wrote the model."""
    losses = result.epoch_loss
    if cfg.unlabelled:
        data = f"{result.images:,} photos (each its own class)"
    else:
        data = f"{result.images:,} photos in {result.classes:,} classes"
    if losses:
        per_epoch = statistics.median(result.epoch_seconds) if result.epoch_seconds else 0.0
        text = (
            f"Trained {WHAT_TEXT[cfg.train]} on {data}: loss {losses[0]:.3f} → {losses[-1]:.3f} "
            f"in {result.epochs_done} epochs ({per_epoch:.1f} s/epoch; preparing "
            f"{result.cache_seconds:.1f} s)."
        )
    else:
        text = f"Nothing left to train ({result.epochs_done} epochs were already done)."
    kind = "weights bundle" if cfg.train == "layer4" else "ECA head"
    return (
        f"{text}\nSaved the {kind} to {result.output}\n\n"
        "“Use this model” switches the library to it; the photos are then indexed again."
    )


def use_values(cfg: TrainConfig, output: Path) -> dict:
    """Settings values (MainWindow.apply_settings) that switch to a trained file.

    A bundle replaces the weights and their head; a head goes on the weights it was trained
    on. A whitening belongs to the old model id, so it is turned off either way.
    """
    if cfg.train == "layer4":
        return {"weights": str(output), "head": None, "whitening": None}
    return {"head": str(output), "whitening": None}


class TrainDialog(QDialog):
    """Folder, mode, epochs, what to train, output name; Start, Cancel, Resume, Use this model.

    `library()` gives the window's current Library: its model configuration is the starting
    point, its folders the default data set, and its download permission is kept. Fields of
    TrainConfig with no control (views, batch_size, ...) can be given in `overrides`.
    """

    use_model = Signal(dict)  # values for MainWindow.apply_settings
    run_started = Signal(object)  # a TrainWorker whose thread is about to start
    run_finished = Signal(object)  # TrainResult, or None after a failure; the thread has ended

    def __init__(
        self,
        library: Callable[[], object],
        models_dir: Path,
        *,
        overrides: dict | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        from imgfinder.core.train import TrainConfig  # noqa: PLC0415 (lazy: torch)

        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(overrides or {}) - fields
        if unknown:
            raise TypeError(f"not TrainConfig fields: {', '.join(sorted(unknown))}")
        self.library = library
        self.models_dir = Path(models_dir)
        self.overrides = dict(overrides or {})
        self.state = "idle"  # idle | running | cancelling | cancelled | failed | finished
        self.cfg: TrainConfig | None = None  # the last run's settings (Resume repeats them)
        self.result: TrainResult | None = None
        self._error: str | None = None
        self._thread: QThread | None = None
        self._worker: TrainWorker | None = None
        self.setWindowTitle("Train model")
        self.setMinimumWidth(560)
        self._build()
        roots = [path for _, path in library().catalog.roots()]
        self.folder.setText(roots[0] if roots else "")
        if roots:  # a library folder is a photo collection, not a labelled data set
            self.unlabelled.setChecked(True)
        self._count_folder()
        self._update_placeholder()
        self._set_state("idle")

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("A folder of photos")
        self.browse_button = QPushButton("&Browse…")
        self.browse_button.setAutoDefault(False)  # Enter after choosing a folder: not Browse again
        self.browse_button.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.browse_button)
        self.labelled = QRadioButton(LABELLED_TEXT)
        self.unlabelled = QRadioButton(UNLABELLED_TEXT)
        self.labelled.setToolTip("Each sub-folder holds photos of one kind of subject")
        self.unlabelled.setToolTip(
            "Every photo is its own class; the model learns to match altered copies of it"
        )
        self.labelled.setChecked(True)
        self._mode = QButtonGroup(self)
        self._mode.addButton(self.labelled)
        self._mode.addButton(self.unlabelled)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(DEFAULT_EPOCHS["labelled"])
        self.epochs.setToolTip(
            "Labelled training was best after 3-4 epochs in the benchmarks, adapting to "
            "photos after about 15; more epochs are not always better"
        )
        self._epochs_edited = False
        self.epochs.valueChanged.connect(self._epochs_changed)
        self.unlabelled.toggled.connect(self._mode_changed)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self._summary_token = 0
        self._summary_cancel = threading.Event()
        self._summary_signals = _SummarySignals(self)
        self._summary_signals.done.connect(self._summary_ready)
        self._summary: dict | None = None
        self._summary_timer = QTimer(self, singleShot=True, interval=300)
        self._summary_timer.timeout.connect(self._count_folder)
        self.what = QComboBox()
        for key, text in WHAT_TEXT.items():
            self.what.addItem(text, key)
        self.what.setToolTip(
            "layer4 + ECA writes a full weights file; ECA only trains 7 weights on top of "
            "the current model (seconds per epoch)"
        )
        self.output = QLineEdit()
        self.output.setToolTip(f"A name for the file in {self.models_dir}, or a full path")
        self.folder.textChanged.connect(self._update_placeholder)
        self.folder.textChanged.connect(self._folder_edited)
        self.what.currentIndexChanged.connect(self._update_placeholder)

        self.form = QWidget()
        form = QFormLayout(self.form)
        form.setContentsMargins(0, 0, 0, 0)
        folder_label = QLabel("&Folder:")
        folder_label.setBuddy(self.folder)
        form.addRow(folder_label, folder_row)
        form.addRow("", self.summary)
        modes = QVBoxLayout()
        modes.addWidget(self.labelled)
        modes.addWidget(self.unlabelled)
        form.addRow("Mode:", modes)
        form.addRow("&Epochs:", self.epochs)
        form.addRow("&What to train:", self.what)
        form.addRow("&Output name:", self.output)

        self.bar = QProgressBar()
        self.status = QLabel()
        self.message = QLabel()
        for label in (self.status, self.message):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button = QPushButton("&Start")
        self.cancel_button = QPushButton("&Cancel")
        self.cancel_button.setToolTip("Stop after the current batch; the run can be resumed")
        self.resume_button = QPushButton("&Resume")
        self.use_button = QPushButton("&Use this model")
        self.close_button = QPushButton("C&lose")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume)
        self.use_button.clicked.connect(self._use)
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.cancel_button, self.resume_button, self.use_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)

        lay = QVBoxLayout(self)
        lay.addWidget(self.form)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addWidget(self.message, 1)
        lay.addLayout(buttons)

    # -- the folder's classes and photos -------------------------------------------------
    def _epochs_changed(self, _v: int) -> None:
        if not getattr(self, "_setting_epochs", False):
            self._epochs_edited = True

    def _mode_changed(self, _on: bool) -> None:
        if not self._epochs_edited:  # follow the mode's default until the user sets one
            self._setting_epochs = True
            mode = "unlabelled" if self.unlabelled.isChecked() else "labelled"
            self.epochs.setValue(DEFAULT_EPOCHS[mode])
            self._setting_epochs = False
        self._show_summary()

    def _folder_edited(self, _text: str) -> None:
        self._summary_token += 1  # an answer for the old folder is not shown
        self._summary = None
        self.summary.setText("Counting photos…")
        self._summary_timer.start()

    def _count_folder(self) -> None:
        self._summary_cancel.set()  # a count still running for an older folder stops
        self._summary_cancel = threading.Event()
        self._summary_token += 1
        self._summary = None
        folder = self.folder.text().strip()
        if not folder:
            self.summary.setText("")
            return
        self.summary.setText("Counting photos…")
        QThreadPool.globalInstance().start(
            _SummaryJob(self._summary_token, folder, self._summary_signals, self._summary_cancel)
        )

    @Slot(int, object)
    def _summary_ready(self, token: int, summary: dict) -> None:
        if token != self._summary_token:
            return
        self._summary = summary
        self._show_summary()

    def _show_summary(self) -> None:
        if self._summary is not None:
            self.summary.setText(folder_text(self._summary, self.unlabelled.isChecked()))

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder to train on", self.folder.text())
        if path:
            self.folder.setText(path)

    def _update_placeholder(self) -> None:
        from imgfinder.core.train import TrainConfig  # noqa: PLC0415 (lazy: torch)

        folder = self.folder.text().strip()
        cfg = TrainConfig(folder or "dataset", train=self.what.currentData())
        self.output.setPlaceholderText(f"default: {self._default_name(cfg)}")

    @staticmethod
    def _default_name(cfg: TrainConfig) -> str:
        from imgfinder.core.train import default_output  # noqa: PLC0415 (lazy: torch)

        return default_output(cfg, Path(cfg.dataset).expanduser().resolve()).name

    # -- runs --------------------------------------------------------------------------------
    def config(self) -> TrainConfig:
        """The form as a TrainConfig on the library's current model; the file goes to models_dir."""
        from imgfinder.core.train import TrainConfig  # noqa: PLC0415 (lazy: torch)

        lib = self.library()
        cfg = TrainConfig(
            dataset=self.folder.text().strip(),
            model=dataclasses.replace(lib.config),
            epochs=self.epochs.value(),
            unlabelled=self.unlabelled.isChecked(),
            train=self.what.currentData(),
        )
        cfg = dataclasses.replace(cfg, **self.overrides)
        name = self.output.text().strip() or self._default_name(cfg)
        out = Path(name).expanduser()
        cfg.output = str(out if len(out.parts) > 1 else self.models_dir / out)
        return cfg

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """A new run from the form (an earlier checkpoint of the same file is started over)."""
        if self.running:
            return
        if not self.folder.text().strip():
            self._show_error("Choose a folder of photos to train on.")
            return
        self._run(self.config(), resume=False)

    def resume(self) -> None:
        """Continue the cancelled run from its checkpoint, with the same settings."""
        if self.running or self.cfg is None:
            return
        self._run(self.cfg, resume=True)

    def _run(self, cfg: TrainConfig, *, resume: bool) -> None:
        self.cfg, self.result, self._error = cfg, None, None
        worker = TrainWorker(cfg, resume=resume, allow_download=self.library().allow_download)
        thread = worker_thread(worker, "imgfinder-train")
        worker.progress.connect(self._progress)
        worker.failed.connect(self._failed)
        worker.finished.connect(self._worker_finished)
        thread.finished.connect(self._thread_finished)
        self._thread, self._worker = thread, worker
        self.message.setText("")
        self.status.setText("Resuming…" if resume else "Loading the model…")
        self.bar.setRange(0, 0)
        self._set_state("running")
        self.run_started.emit(worker)
        thread.start()
        log.info("training %s on %s (resume=%s)", cfg.train, cfg.dataset, resume)

    def cancel(self) -> None:
        """Stop after the current batch; the worker ends by itself (no waiting here)."""
        if self._worker is not None and self.state == "running":
            self._worker.cancel()
            self._set_state("cancelling")
            self.status.setText("Stopping after this batch…")

    def shutdown(self) -> None:
        """Cancel, quit, wait: the core writes its checkpoint before the thread ends."""
        self._summary_cancel.set()
        thread, worker = self._thread, self._worker
        if thread is None or worker is None:
            return
        stop_and_wait(thread, worker)
        # deliver what the worker queued before it ended (its result, the thread's end) now
        QCoreApplication.sendPostedEvents(self, QEvent.Type.MetaCall)
        if self._thread is thread:
            self._cleanup()

    # -- worker signals (GUI thread) -----------------------------------------------------------
    @Slot(object)
    def _progress(self, p: Progress) -> None:
        if self.state != "running":
            return
        if p.total:
            self.bar.setRange(0, p.total)
            self.bar.setValue(min(p.done, p.total))
        else:
            self.bar.setRange(0, 0)
        self.status.setText(progress_text(p))

    @Slot(str)
    def _failed(self, message: str) -> None:
        self._error = gui_message(message)

    @Slot(object)
    def _worker_finished(self, result: TrainResult | None) -> None:
        self.result = result
        if result is None:
            self._show_error(self._error or "Training stopped.")
        elif result.cancelled:
            done = f"after {result.epochs_done} of {self.cfg.epochs} epochs"
            self.status.setText(f"Cancelled {done}.")
            self.message.setText(
                "The run can be resumed: Resume continues where it stopped, with the same "
                "settings. Start begins again."
            )
            self._set_state("cancelled")
        else:
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
            self.status.setText("Finished.")
            self.message.setText(summary_text(self.cfg, result))
            self._set_state("finished")

    @Slot()
    def _thread_finished(self) -> None:
        if self.sender() is not self._thread:
            return  # already cleaned up by shutdown()
        self._cleanup()

    def _cleanup(self) -> None:
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        dispose(thread, worker)
        if self.state in ("running", "cancelling"):  # no result arrived (not expected)
            self._show_error(self._error or "Training stopped.")
        self.run_finished.emit(self.result)

    def _show_error(self, message: str) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status.setText("Training did not run to the end.")
        self.message.setText(message)
        self._set_state("failed")

    def _set_state(self, state: str) -> None:
        self.state = state
        busy = state in ("running", "cancelling")
        self.form.setEnabled(not busy)
        self.start_button.setEnabled(not busy)
        self.cancel_button.setEnabled(state == "running")
        self.resume_button.setVisible(state == "cancelled")
        self.use_button.setVisible(state == "finished")
        self.use_button.setEnabled(state == "finished")
        self.bar.setVisible(state != "idle")

    def _use(self) -> None:
        if self.state != "finished" or self.result is None or self.result.output is None:
            return
        values = use_values(self.cfg, self.result.output)
        self.close()
        self.use_model.emit(values)

    # -- closing -------------------------------------------------------------------------------
    def done(self, code: int) -> None:  # Esc, Close, the title bar's close button
        self.shutdown()
        super().done(code)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)

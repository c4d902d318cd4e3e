"""Library ▸ Train model: a run from the dialog, cancel and resume, errors, closing mid-run."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt  # noqa: E402

from imgfinder.core.train import TrainProgress  # noqa: E402
from imgfinder.core.types import Progress  # noqa: E402
from imgfinder.gui.settings import GuiSettings  # noqa: E402
from imgfinder.gui.train_dialog import DEFAULT_EPOCHS, WHAT_TEXT, progress_text  # noqa: E402
from tests.gui_helpers import INDEX_TIMEOUT_MS, make_photos, wait_model  # noqa: E402
from tests.imgutil import make_jpeg  # noqa: E402

TRAIN_TIMEOUT_MS = 180_000
FAST = {"views": 2, "batch_size": 4}  # with TEST_INPUT_SIZE: a run takes seconds on a CPU
COLOURS = [(200, 60, 60), (60, 180, 70), (70, 80, 210)]
N_PHOTOS = 3


def make_classes(root: Path, per_class: int = 3) -> Path:
    """A labelled data set: one sub-folder per class, small distinct JPEGs."""
    for c, colour in enumerate(COLOURS):
        for i in range(per_class):
            make_jpeg(root / f"class{c}" / f"{i}.jpg", (96, 80), colour, seed=10 * c + i)
    return root


def record_stages(dlg) -> list[str]:
    """The stage of every progress signal of the dialog's runs (recorded in the worker thread)."""
    stages: list[str] = []

    def started(worker) -> None:
        worker.progress.connect(
            lambda p: stages.append(p.stage), Qt.ConnectionType.DirectConnection
        )

    dlg.run_started.connect(started)
    return stages


def hold_after_first_batch(dlg) -> threading.Event:
    """The first run's worker waits after its first training batch until it is cancelled.

    So "mid-run" is certain however fast the machine: the wait is in the worker's thread, and
    ends when the dialog or the window sets the cancel flag. The returned event says it waits.
    """
    held = threading.Event()

    def started(worker) -> None:
        def hold(p) -> None:
            if p.stage == "train" and not held.is_set():
                held.set()
                worker.cancel_event.wait(TRAIN_TIMEOUT_MS / 1000)

        worker.progress.connect(hold, Qt.ConnectionType.DirectConnection)

    dlg.run_started.connect(started)
    return held


def start_and_wait(qtbot, dlg, button) -> object:
    with qtbot.waitSignal(dlg.run_finished, timeout=TRAIN_TIMEOUT_MS) as blocker:
        button.click()
    assert dlg._thread is None and not dlg.running
    return blocker.args[0]


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_classes(tmp_path / "flowers")


def test_progress_text_shows_stage_epoch_loss_and_eta():
    p = TrainProgress("train", 8, 18, 4.0, 2.5, "epoch 1/2 loss 3.9", epoch=1, epochs=2, loss=3.91)
    assert progress_text(p) == "Training: epoch 1/2 loss 3.910 · 4.0 photos/s · ETA 00:02"
    cache = Progress("cache", 4, 9, 2.0, 65.0, message="trunk features")
    assert progress_text(cache) == "Preparing: features of 4/9 photos · ETA 01:05"
    assert progress_text(Progress("calibrate", 2, 9)).startswith("Re-estimating BatchNorm")


def test_training_from_the_menu_writes_a_bundle_and_switches_to_it(
    qtbot, make_window, dataset, tmp_path
):
    w = make_window()
    photos = tmp_path / "Photos"
    make_photos(photos, N_PHOTOS)
    assert w.train_action.isEnabled()
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS):
        w.add_folder(str(photos))
        assert not w.train_action.isEnabled()  # not next to a running index
    qtbot.waitUntil(w.train_action.isEnabled)  # again once the index thread has ended
    old_id = w.lib.model_id
    dlg = w.open_train_dialog(**FAST)
    assert dlg is w.train_dialog and dlg.isVisible() and not dlg.isModal()
    assert dlg.folder.text() == str(photos)  # the first library folder
    # a library folder is a photo collection: adapt to it, with that mode's epoch default
    assert dlg.unlabelled.isChecked() and dlg.epochs.value() == DEFAULT_EPOCHS["unlabelled"]
    qtbot.waitUntil(lambda: "each is its own class" in dlg.summary.text())
    assert dlg.summary.text().startswith(f"{N_PHOTOS} photos")
    assert dlg.what.currentText() == WHAT_TEXT["layer4"]
    assert "weights-Photos.pt" in dlg.output.placeholderText()
    dlg.labelled.setChecked(True)
    assert dlg.epochs.value() == DEFAULT_EPOCHS["labelled"]  # 3-4 were best (README)
    (dataset / "odd").mkdir()
    make_photos(dataset / "odd", 1)  # a stray folder would silently become a class
    dlg.folder.setText(str(dataset))
    qtbot.waitUntil(lambda: "classes (sub-folders)" in dlg.summary.text(), timeout=10_000)
    assert dlg.summary.text().startswith("4 classes (sub-folders), 10 photos")
    assert "odd/ (1)" in dlg.summary.text()
    shutil.rmtree(dataset / "odd")
    dlg.epochs.setValue(2)
    stages = record_stages(dlg)
    result = start_and_wait(qtbot, dlg, dlg.start_button)
    assert {"cache", "train", "epoch"} <= set(stages)
    assert result is dlg.result and not result.cancelled and result.epochs_done == 2
    out = w.data_dir / "models" / "weights-flowers.pt"
    assert result.output == out and out.is_file()
    assert dlg.state == "finished" and dlg.use_button.isVisible()
    text = dlg.message.text()
    assert f"{result.epoch_loss[0]:.3f} → {result.epoch_loss[-1]:.3f}" in text
    assert "s/epoch" in text and str(out) in text and "9 photos in 3 classes" in text
    wait_model(qtbot, w, dlg.use_button.click)
    assert not dlg.isVisible()
    assert (w.lib.config.weights, w.lib.config.head) == (str(out), None)
    assert w.lib.model_id != old_id
    assert w.model_info.stale == N_PHOTOS and w.reindex_box is not None
    assert GuiSettings.load(w.data_dir).weights == str(out)


def test_cancel_keeps_a_checkpoint_and_resume_finishes_the_head(
    qtbot, make_window, dataset, weights_file, caplog
):
    w = make_window()
    dlg = w.open_train_dialog(**FAST)
    dlg.folder.setText(str(dataset))
    dlg.epochs.setValue(2)
    dlg.what.setCurrentIndex(dlg.what.findData("eca"))
    dlg.output.setText("my-head")
    held = hold_after_first_batch(dlg)
    with qtbot.waitSignal(dlg.run_finished, timeout=TRAIN_TIMEOUT_MS) as blocker:
        dlg.start_button.click()
        assert dlg.state == "running" and not dlg.start_button.isEnabled()
        assert not dlg.form.isEnabled()
        qtbot.waitUntil(held.is_set, timeout=TRAIN_TIMEOUT_MS)
        dlg.cancel_button.click()  # the worker is waiting after batch 1: it stops right there
        assert dlg.state == "cancelling" and not dlg.cancel_button.isEnabled()
    cancelled = blocker.args[0]
    out = w.data_dir / "models" / "my-head.pt"
    assert cancelled.cancelled and cancelled.output is None and cancelled.epochs_done == 0
    assert cancelled.checkpoint == out.with_suffix(".ckpt") and cancelled.checkpoint.is_file()
    assert not out.exists()
    assert dlg.state == "cancelled" and dlg.resume_button.isVisible()
    assert "resumed" in dlg.message.text() and not dlg.use_button.isVisible()
    with caplog.at_level(logging.INFO, logger="imgfinder.core.train"):
        result = start_and_wait(qtbot, dlg, dlg.resume_button)
    assert "resuming at epoch 0 step 1" in caplog.text
    assert not result.cancelled and result.output == out and out.is_file()
    assert result.epochs_done == 2 and not cancelled.checkpoint.exists()
    assert dlg.state == "finished" and not dlg.resume_button.isVisible()
    # a head goes on the weights it was trained with
    wait_model(qtbot, w, dlg.use_button.click)
    assert (w.lib.config.weights, w.lib.config.head) == (str(weights_file), str(out))
    assert GuiSettings.load(w.data_dir).head == str(out)


def test_a_folder_without_classes_shows_the_error_in_the_dialog(qtbot, make_window, tmp_path):
    w = make_window()
    loose = tmp_path / "loose"
    make_photos(loose, 3)
    dlg = w.open_train_dialog(**FAST)
    dlg.folder.setText(str(loose))
    result = start_and_wait(qtbot, dlg, dlg.start_button)
    assert result is None and dlg.state == "failed"
    assert "needs at least two class sub-folders" in dlg.message.text()
    assert "Adapt to these photos" in dlg.message.text()  # not the CLI's --unlabelled
    assert dlg.start_button.isEnabled() and dlg.form.isEnabled()
    assert not dlg.use_button.isVisible() and not dlg.resume_button.isVisible()
    # nothing escaped: pytest-qt fails a test on an exception raised in a slot
    assert w.train_action.isEnabled() and w.lib.config.head is None


@pytest.mark.parametrize("closing", ["dialog", "window"])
def test_closing_mid_run_cancels_and_joins_the_thread(qtbot, make_window, dataset, closing):
    w = make_window()
    dlg = w.open_train_dialog(**FAST)
    dlg.folder.setText(str(dataset))
    dlg.what.setCurrentIndex(dlg.what.findData("eca"))
    held = hold_after_first_batch(dlg)
    finished = []
    dlg.run_finished.connect(finished.append)
    dlg.start_button.click()
    qtbot.waitUntil(held.is_set, timeout=TRAIN_TIMEOUT_MS)
    thread = dlg._thread
    assert thread.isRunning()
    (dlg if closing == "dialog" else w).close()
    assert thread.isFinished() and dlg._thread is None and not dlg.isVisible()
    assert len(finished) == 1 and finished[0].cancelled  # joined, its result delivered
    assert dlg.state == "cancelled" and finished[0].checkpoint.is_file()
    assert not (w.data_dir / "models" / "head-flowers.pt").exists()

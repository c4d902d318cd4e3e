"""Settings ▸ Model: trained heads, weights and whitening files are selectable and re-index."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")

import shiboken6  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from imgfinder.core import whiten  # noqa: E402
from imgfinder.core.extract import head_tag  # noqa: E402
from imgfinder.core.whiten import learn_whitening, load_whitening, save_whitening  # noqa: E402
from imgfinder.gui.model_files import DEFAULT_MODEL_TEXT  # noqa: E402
from imgfinder.gui.settings import (  # noqa: E402
    SETTINGS_FILE,
    Effective,
    GuiSettings,
    LaunchOptions,
    candidate_model_id,
)
from imgfinder.gui.settings_dialog import LEARN_TEXT, SettingsDialog  # noqa: E402
from tests.common import TEST_INPUT_SIZE  # noqa: E402
from tests.gui_helpers import (  # noqa: E402
    INDEX_TIMEOUT_MS,
    index_folder,
    make_photos,
    wait_model,
)

N_PHOTOS = 4
HEAD_STATE = {"conv.weight": torch.full((1, 1, 7), 0.1)}
META = {
    "trained": "eca",
    "dataset": "/photos/flowers",
    "unlabelled": False,
    "classes": 3,
    "images": 30,
    "epochs": 2,
    "input_size": TEST_INPUT_SIZE,
    "final_loss": 1.25,
    "created": "2024-05-01T12:00:00+00:00",
}


def save_head(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"head": HEAD_STATE, "meta": META}, path)
    return path


def save_whitening_for(path, model_id: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = learn_whitening(rng.standard_normal((24, 4096)).astype(np.float32), 4, model_id=model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_whitening(w, path)
    return w


def tooltip(combo, i: int) -> str:
    return combo.itemData(i, Qt.ItemDataRole.ToolTipRole) or ""


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "Photos"
    make_photos(folder, N_PHOTOS)
    return folder


def effective(weights_file, **kw) -> Effective:
    values = dict(
        device="cpu",
        input_size=TEST_INPUT_SIZE,
        index_backend="exact",
        weights=str(weights_file),
        head=None,
    )
    return Effective(**{**values, **kw})


def test_candidate_model_id_matches_the_extractor(shared_extractor, weights_file, tmp_path):
    raw = shared_extractor.model_id
    assert candidate_model_id(str(weights_file), None, TEST_INPUT_SIZE) == raw
    head = save_head(tmp_path / "h.pt")
    with_head = candidate_model_id(str(weights_file), str(head), TEST_INPUT_SIZE)
    assert with_head == raw.replace("/eca0/", f"/{head_tag(HEAD_STATE)}/")
    assert candidate_model_id(str(tmp_path / "missing.pth"), None, 224) is None


def test_settings_file_keeps_model_choices_and_reads_old_files(tmp_path):
    s = GuiSettings(weights="/w.pth", head="/h.pt", whitening="/models/whiten-x.npz")
    s.save(tmp_path)
    assert GuiSettings.load(tmp_path) == s
    raw = json.loads((tmp_path / SETTINGS_FILE).read_text())
    del raw["head"], raw["whitening"]  # a file written before these settings existed
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(raw))
    old = GuiSettings.load(tmp_path)
    assert old.head is None and old.whitening is None and old.weights == "/w.pth"
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"whitening": 3, "head": ""}))
    assert GuiSettings.load(tmp_path).whitening is None
    assert GuiSettings.load(tmp_path).head is None
    eff = Effective.resolve(s, LaunchOptions(whitening="/cli.npz"))
    assert eff.whitening == "/cli.npz" and eff.model_config().whitening == "/cli.npz"
    assert Effective.resolve(s, LaunchOptions()).model_config().head == "/h.pt"


def test_dialog_lists_models_with_their_meta_and_whitening_per_model(
    qtbot, tmp_path, weights_file, shared_extractor
):
    data = tmp_path / "data"
    models = data / "models"
    head = save_head(models / "head-flowers.pt")
    (models / "junk.pt").write_bytes(b"not a torch file")
    raw = shared_extractor.model_id
    w_raw = save_whitening_for(models / "whiten-raw.npz", raw)
    head_id = raw.replace("/eca0/", f"/{head_tag(HEAD_STATE)}/")
    save_whitening_for(models / "whiten-head.npz", head_id, seed=1)
    eff = effective(weights_file, whitening=str(models / "whiten-raw.npz"))
    dlg = SettingsDialog(GuiSettings(), eff, data)
    qtbot.addWidget(dlg)
    labels = [dlg.model.itemText(i) for i in range(dlg.model.count())]
    assert labels[0] == DEFAULT_MODEL_TEXT
    # every backbone's ImageNet model is offered; Lite0's is installed, so it needs no download
    assert labels[1] == "ImageNet EfficientNet-Lite0 (installed, no download)"
    assert "not installed" not in tooltip(dlg.model, 1) and "1280" not in labels[1]
    assert "not downloaded yet" in tooltip(dlg.model, 0)  # ResNet50's file is not there
    assert len(labels) == 4 and labels[3] == f"Weights file: {weights_file.name}"
    assert dlg.model.currentIndex() == 3  # the weights in use
    assert "head-flowers" in labels[2] and "flowers" in labels[2] and "2024-05-01" in labels[2]
    tip = tooltip(dlg.model, 2)
    assert "ECA head" in tip and "/photos/flowers" in tip and f"{TEST_INPUT_SIZE} px" in tip
    assert "2024-05-01" in tip and "3 classes" in tip
    # the current whitening is offered for the current model, selected
    assert [dlg.whitening.itemData(i) for i in range(dlg.whitening.count())] == [
        None,
        str(models / "whiten-raw.npz"),
    ]
    assert dlg.values()["whitening"] == str(models / "whiten-raw.npz")
    assert str(w_raw.samples) in tooltip(dlg.whitening, 1)
    # another model: its own whitening files only; back: the previous choice again
    dlg.model.setCurrentIndex(1)
    assert dlg.values()["backbone"] == "efficientnet-lite0"
    assert dlg.values()["weights"] is None and dlg.values()["head"] is None
    assert dlg.current_model_id().startswith("fused-eca-lite0/pkg-lite0-57934424/eca0/")
    dlg.model.setCurrentIndex(2)
    v = dlg.values()
    assert (v["weights"], v["head"], v["whitening"]) == (str(weights_file), str(head), None)
    assert dlg.whitening.itemData(1) == str(models / "whiten-head.npz")
    assert "another model" in dlg.whitening_note.text()
    dlg.model.setCurrentIndex(3)
    assert dlg.values()["whitening"] == str(models / "whiten-raw.npz")
    dlg.input_size.setValue(TEST_INPUT_SIZE + 32)  # another model id: no whitening for it
    assert dlg.whitening.count() == 1 and dlg.values()["whitening"] is None
    dlg.input_size.setValue(TEST_INPUT_SIZE)
    dlg.whitening.setCurrentIndex(0)  # turned off by hand stays off
    dlg.model.setCurrentIndex(2)
    dlg.model.setCurrentIndex(3)
    assert dlg.values()["whitening"] is None
    # the default model clears weights and head; a head from elsewhere can be added
    dlg.model.setCurrentIndex(0)
    assert (dlg.values()["weights"], dlg.values()["head"]) == (None, None)
    other = save_head(tmp_path / "elsewhere" / "my-head.pt")
    dlg.use_model_file(str(other))
    assert dlg.model.currentText() == "Head file: my-head.pt"
    assert (dlg.values()["weights"], dlg.values()["head"]) == (str(weights_file), str(other))


def test_choosing_a_trained_head_reopens_and_reindexes(qtbot, make_window, photos, weights_file):
    w = make_window()
    index_folder(qtbot, w, photos)
    old_id = w.lib.model_id
    head = save_head(w.data_dir / "models" / "head-flowers.pt")
    w.open_settings()
    dlg = w.settings_dialog
    i = next(i for i, c in enumerate(dlg.model_choices) if c.head == str(head))
    dlg.model.setCurrentIndex(i)
    wait_model(qtbot, w, dlg.accept)
    cfg = w.lib.config
    assert (cfg.weights, cfg.head, cfg.whitening) == (str(weights_file), str(head), None)
    assert w.lib.model_id != old_id and head_tag(HEAD_STATE) in w.lib.model_id
    assert w.model_info.stale == N_PHOTOS and w.reindex_box is not None
    saved = GuiSettings.load(w.data_dir)
    assert saved.head == str(head) and saved.whitening is None
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        w.reindex_box.done(w.reindex_box.StandardButton.Yes)  # indexed in the background
    assert blocker.args[0].indexed == N_PHOTOS
    assert w.lib.catalog.model_counts() == {w.lib.model_id: N_PHOTOS}
    # back to the untrained head through the same dialog
    w.open_settings()
    dlg = w.settings_dialog
    assert dlg.model_choice().head == str(head)
    dlg.model.setCurrentIndex(dlg._find_model(str(weights_file), None))
    wait_model(qtbot, w, dlg.accept)
    assert w.lib.config.head is None and w.lib.model_id == old_id
    assert GuiSettings.load(w.data_dir).head is None


def test_choosing_a_whitening_reopens_with_its_model_id(qtbot, make_window, photos):
    w = make_window()
    index_folder(qtbot, w, photos)
    raw = w.lib.model_id
    path = w.data_dir / "models" / "whiten-test.npz"
    wh = save_whitening_for(path, raw)
    save_whitening_for(w.data_dir / "models" / "whiten-other.npz", raw + "-other", seed=2)
    w.open_settings()
    dlg = w.settings_dialog
    assert dlg.whitening.count() == 2 and dlg.whitening.itemData(1) == str(path)
    dlg.whitening.setCurrentIndex(1)
    wait_model(qtbot, w, dlg.accept)
    assert w.lib.config.whitening == str(path) and w.lib.config.head is None
    assert w.lib.model_id == wh.output_model_id != raw
    assert GuiSettings.load(w.data_dir).whitening == str(path)
    # the dialog shows the whitening in use; turning it off goes back to the raw model id
    w.open_settings()
    dlg = w.settings_dialog
    assert dlg.values()["whitening"] == str(path)
    dlg.whitening.setCurrentIndex(0)
    wait_model(qtbot, w, dlg.accept)
    assert w.lib.config.whitening is None and w.lib.model_id == raw
    assert GuiSettings.load(w.data_dir).whitening is None


def test_whitening_change_offers_reindex(qtbot, make_window, photos):
    w = make_window()
    index_folder(qtbot, w, photos)
    path = w.data_dir / "models" / "whiten-test.npz"
    save_whitening_for(path, w.lib.model_id)
    w.open_settings()
    dlg = w.settings_dialog
    dlg.whitening.setCurrentIndex(1)
    wait_model(qtbot, w, dlg.accept)
    assert w.model_info.stale == N_PHOTOS and w.reindex_box is not None
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        w.reindex_box.done(w.reindex_box.StandardButton.Yes)
    assert blocker.args[0].indexed == N_PHOTOS
    assert w.lib.catalog.model_counts() == {w.lib.model_id: N_PHOTOS}


def ok_enabled(dlg) -> bool:
    return dlg.buttons.button(dlg.buttons.StandardButton.Ok).isEnabled()


def test_learning_a_whitening_selects_it_and_ok_applies_it(qtbot, make_window, photos):
    w = make_window()
    index_folder(qtbot, w, photos)
    raw = w.lib.model_id
    w.open_settings()
    dlg = w.settings_dialog
    assert dlg.whitening.count() == 1 and dlg.learn_button.isEnabled()
    qtbot.waitUntil(lambda: dlg.learn_dim.value() == 16)  # the core's rule for 4 photos: 1
    dlg.input_size.setValue(TEST_INPUT_SIZE + 32)  # another model: its vectors are not here
    assert not dlg.learn_button.isEnabled()
    dlg.input_size.setValue(TEST_INPUT_SIZE)
    assert dlg.learn_button.isEnabled()
    dlg.start_learning(8)
    assert dlg.learning and not dlg.learn_busy.isHidden() and not ok_enabled(dlg)
    assert not dlg.learn_button.isEnabled() and dlg.learn_button.text() != LEARN_TEXT
    qtbot.waitUntil(lambda: not dlg.learning, timeout=60_000)
    files = sorted((w.data_dir / "models").glob("whiten-*.npz"))
    assert len(files) == 1, dlg.whitening_note.text()
    learned = load_whitening(files[0])
    # 4 vectors: D' is capped at their rank, 3
    assert (learned.model_id, learned.samples, learned.dim_out) == (raw, N_PHOTOS, N_PHOTOS - 1)
    path = str(files[0])
    assert dlg.whitening.currentData() == path and dlg.values()["whitening"] == path
    assert "Learned" in dlg.whitening_note.text() and "asked for 8" in dlg.whitening_note.text()
    assert ok_enabled(dlg) and dlg.learn_busy.isHidden() and dlg.learn_button.text() == LEARN_TEXT
    wait_model(qtbot, w, dlg.accept)
    assert w.lib.config.whitening == path
    assert w.lib.model_id == learned.output_model_id != raw
    assert w.model_info.stale == N_PHOTOS and w.reindex_box is not None


def test_learning_a_supervised_whitening_from_class_folders(
    qtbot, make_window, photos, tmp_path, monkeypatch
):
    """Learn from class folders…: the folder picked, its photos embedded with the library's
    model in the background, the supervised whitening saved, selected and described."""
    from PySide6.QtWidgets import QFileDialog

    from tests.imgutil import make_jpeg

    classes = tmp_path / "classes"
    for c in range(2):
        for i in range(3):
            make_jpeg(classes / f"c{c}" / f"{i}.jpg", (72, 56), seed=40 + 10 * c + i)
    w = make_window()
    index_folder(qtbot, w, photos)
    w.open_settings()
    dlg = w.settings_dialog
    assert dlg.learn_classes_button.isEnabled()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(classes))
    qtbot.mouseClick(dlg.learn_classes_button, Qt.MouseButton.LeftButton)
    assert dlg.learning and not dlg.learn_classes_button.isEnabled()
    assert str(classes) in dlg.whitening_note.text()
    qtbot.waitUntil(lambda: not dlg.learning, timeout=60_000)
    (path,) = sorted((w.data_dir / "models").glob("whiten-lw*.npz"))
    learned = load_whitening(path)
    assert (learned.kind, learned.classes, learned.samples) == ("supervised", 2, 6)
    assert dlg.whitening.currentData() == str(path)
    assert "6 photos in 2 classes" in dlg.whitening_note.text(), dlg.whitening_note.text()
    assert dlg.learn_classes_button.isEnabled() and ok_enabled(dlg)


def test_learning_from_an_empty_library_says_why_in_the_dialog(qtbot, make_window):
    w = make_window()
    w.open_settings()
    dlg = w.settings_dialog
    qtbot.mouseClick(dlg.learn_button, Qt.MouseButton.LeftButton)
    assert dlg.learning
    qtbot.waitUntil(lambda: not dlg.learning, timeout=60_000)
    note = dlg.whitening_note.text()
    assert note.startswith("Cannot learn a whitening") and "index some photos first" in note
    assert ok_enabled(dlg) and dlg.learn_button.isEnabled() and dlg.whitening.count() == 1
    assert not list((w.data_dir / "models").glob("whiten-*.npz"))


def test_a_dialog_closed_while_learning_drops_the_result(qtbot, make_window, monkeypatch):
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_learning(lib, dim, cancel=None):  # stands in for the seconds of a 4096-d run
        started.release()
        assert release.wait(30)
        rng = np.random.default_rng(0)
        return learn_whitening(rng.standard_normal((24, 64)), 4, model_id="m")

    monkeypatch.setattr(whiten, "learn_from_library", slow_learning)
    w = make_window()
    models = w.data_dir / "models"
    try:
        # closed (Cancel), then deleted: the run is cancelled, nothing is saved
        w.open_settings()
        dlg = w.settings_dialog
        dlg.start_learning(8)
        assert started.acquire(timeout=10)
        dlg.reject()
        assert not dlg.learning and ok_enabled(dlg)
        shiboken6.delete(dlg)
        with qtbot.waitSignal(w.tasks.jobs.failed, timeout=30_000):  # "cancelled" arrives late
            release.set()
        assert w.tasks.pool.waitForDone(30_000)  # ... and was dropped quietly
        assert not list(models.glob("whiten-*.npz"))
        # deleted without closing: the result arrives for a dead dialog and is ignored
        release.clear()
        w.open_settings()
        dlg = w.settings_dialog
        dlg.start_learning(8)
        assert started.acquire(timeout=10)
        shiboken6.delete(dlg)
        with qtbot.waitSignal(w.tasks.jobs.done, timeout=30_000):
            release.set()
        assert w.tasks.pool.waitForDone(30_000)
    finally:
        release.set()  # never leave a pool thread blocked


def test_offline_without_resnet_weights_offers_the_installed_lite0(qtbot, make_window, photos):
    """No ResNet50 weights and no network: the dialog offers Lite0; taking it switches the
    library to a new model id and asks before re-indexing (never a silent switch)."""
    w = make_window()
    index_folder(qtbot, w, photos)
    old_id = w.lib.model_id
    w.shutdown()
    w = make_window(wait_model=False, weights=None, offline=True)
    qtbot.waitUntil(lambda: w.weights_dialog is not None, timeout=10_000)
    dlg = w.weights_dialog
    assert dlg.state == "missing" and dlg.alternative is not None
    assert dlg.alternative_button.isVisibleTo(dlg) and not dlg.download_button.isVisibleTo(dlg)
    assert "resnet50-0676ba61.pth" in dlg.message.text()  # which file to put where
    assert "Or use EfficientNet-Lite0 now" in dlg.message.text()
    wait_model(qtbot, w, dlg.alternative_button.click)
    assert w.lib.config.backbone == "efficientnet-lite0"
    assert w.lib.model_id.startswith("fused-eca-lite0/") and w.lib.model_id != old_id
    assert GuiSettings.load(w.data_dir).backbone == "efficientnet-lite0"
    qtbot.waitUntil(lambda: w.reindex_box is not None, timeout=10_000)
    assert w.model_info.stale == N_PHOTOS  # the old vectors are kept until the user says yes
    assert w.lib.catalog.model_counts() == {old_id: N_PHOTOS}


def test_weights_dialog_shows_all_of_its_text_after_a_failed_download(qtbot):
    """The dialog opens while downloading (one line), then the download fails and the long
    help replaces it: the dialog grows to show all of it, and no button is cut off (the
    offline first launch showed neither "Choose weights file…" advice nor the Lite0 offer)."""
    from imgfinder.core.weights import offline_message  # noqa: PLC0415
    from imgfinder.gui.weights_dialog import WeightsDialog  # noqa: PLC0415

    dlg = WeightsDialog()
    qtbot.addWidget(dlg)
    dlg.show_downloading()
    dlg.show()
    qtbot.waitExposed(dlg)
    dlg.show_missing(offline_message("download failed: network unreachable", "resnet50"))
    qtbot.wait(50)
    label = dlg.message
    assert label.height() >= label.heightForWidth(label.width()), label.text()
    if dlg.alternative is not None:
        button = dlg.alternative_button
        assert button.isVisible() and button.width() >= button.sizeHint().width()

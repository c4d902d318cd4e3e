"""The main window end to end: indexing, drops, paste, history, watcher, shutdown, weights."""

from __future__ import annotations

import shutil
import time

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QCoreApplication, QMimeData, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QAction, QGuiApplication, QImage  # noqa: E402
from PySide6.QtWidgets import QLabel, QMainWindow, QSplitter  # noqa: E402

from imgfinder.core.extract import ModelConfig  # noqa: E402
from imgfinder.core.library import Library  # noqa: E402
from imgfinder.gui.settings import GuiSettings  # noqa: E402
from imgfinder.gui.window_parts import restore_splitter  # noqa: E402
from tests.common import TEST_INPUT_SIZE  # noqa: E402
from tests.gui_helpers import (  # noqa: E402
    INDEX_TIMEOUT_MS,
    index_folder,
    make_photos,
    send_drop,
    split_ratio,
    state_hex,
    wait_model,
    wait_results,
)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "Photos"
    make_photos(folder, 12)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def _mime_urls(*urls: QUrl) -> QMimeData:
    mime = QMimeData()
    mime.setUrls(list(urls))
    return mime


def _assert_query_first(result, query_path: str, k: int) -> None:
    items = result.items
    assert len(items) == k
    assert items[0].path == query_path
    assert items[0].score == pytest.approx(1.0, abs=1e-3)
    scores = [it.score for it in items]
    assert scores == sorted(scores, reverse=True)


def test_add_folder_indexes_and_drop_searches(qtbot, make_window, photos):
    w = make_window()
    # the search thread's smaller torch thread count does not leak into threads started later
    import threading

    import torch

    from imgfinder.gui import workers

    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [workers.index_torch_threads()]
    progress = []
    w.index_ctl.progress.connect(progress.append)
    summary = index_folder(qtbot, w, photos)
    assert summary.indexed == 12 and str(photos / "broken.png") in summary.skipped
    assert any(p.stage == "extract" and p.done == p.total for p in progress)
    assert w.lib.catalog.counts() == {"ok": 12, "failed": 1}
    # the library panel, status bar and skipped view follow
    qtbot.waitUntil(lambda: "12 photos" in w.library_panel.summary.text())
    qtbot.waitUntil(lambda: w.skipped.model.rowCount() == 1)
    assert w.skipped.model.index(0, 1).data()  # a reason is listed
    assert w.skipped_button.text() == "1 skipped"

    w.query_panel.count_spin.setValue(5)
    qtbot.waitUntil(lambda: w.search_ctl.k == 5)  # the count is debounced
    query = photos / "img_0003.png"
    result = wait_results(
        qtbot,
        w,
        lambda: send_drop(w.query_panel.drop_zone, _mime_urls(QUrl.fromLocalFile(str(query)))),
    )
    _assert_query_first(result, str(query), 5)
    assert w.results_model.rowCount() == 5
    assert w.results_model.item(0).path == str(query)
    # the query preview arrives off the GUI thread
    qtbot.waitUntil(lambda: w.search_ctl.current.preview is not None)

    # dropping onto the window itself works too, and raw image data (no file) as well
    other = photos / "img_0007.png"
    result = wait_results(
        qtbot, w, lambda: send_drop(w, _mime_urls(QUrl.fromLocalFile(str(other))))
    )
    _assert_query_first(result, str(other), 5)
    mime = QMimeData()
    mime.setImageData(QImage(str(photos / "img_0005.png")))
    result = wait_results(qtbot, w, lambda: send_drop(w.query_panel.drop_zone, mime))
    _assert_query_first(result, str(photos / "img_0005.png"), 5)
    mime = QMimeData()
    mime.setData("image/png", (photos / "img_0009.png").read_bytes())
    result = wait_results(qtbot, w, lambda: send_drop(w.query_panel.drop_zone, mime))
    _assert_query_first(result, str(photos / "img_0009.png"), 5)

    # history: back and forward replay earlier queries
    result = wait_results(qtbot, w, w.back_action.trigger)
    assert result.items[0].path == str(photos / "img_0005.png")
    result = wait_results(qtbot, w, w.forward_action.trigger)
    assert result.items[0].path == str(photos / "img_0009.png")
    assert not w.forward_action.isEnabled()

    # search similar from a result (double-click / Enter), then min-score filter
    second = w.results_model.item(1)
    result = wait_results(qtbot, w, lambda: w.results_view.item_activated.emit(second))
    assert result.items[0].path == second.path
    assert w.query_panel.min_score.text() == "off"  # by default nothing is filtered away,
    assert w.results_model.rowCount() == len(result.items)  # negative centred scores too
    assert "(filtered)" not in w.search.result_header()
    w.query_panel.min_score.setValue(0.999)
    assert w.results_model.rowCount() == 1
    w.query_panel.min_score.setValue(-1.0)
    assert w.results_model.rowCount() == 5


def test_paste_file_url_and_image(qtbot, make_window, photos):
    w = make_window()
    index_folder(qtbot, w, photos)
    w.query_panel.count_spin.setValue(3)
    qtbot.waitUntil(lambda: w.search_ctl.k == 3)
    cb = QGuiApplication.clipboard()
    target = photos / "img_0002.png"
    cb.setMimeData(_mime_urls(QUrl.fromLocalFile(str(target))))
    _assert_query_first(wait_results(qtbot, w, w.paste_action.trigger), str(target), 3)
    target = photos / "img_0010.png"
    cb.setImage(QImage(str(target)))
    _assert_query_first(wait_results(qtbot, w, w.paste_action.trigger), str(target), 3)
    cb.setText(str(photos / "img_0004.png"))  # a copied path
    _assert_query_first(
        wait_results(qtbot, w, w.paste_action.trigger), str(photos / "img_0004.png"), 3
    )
    cb.setText("just words")
    w.paste_action.trigger()
    assert "clipboard" in w.query_panel.message_text()


def test_url_drop_offline_gives_clear_message(qtbot, make_window):
    w = make_window(wait_model=False, weights=None)  # no model needed to fetch a URL
    assert send_drop(w.query_panel.drop_zone, _mime_urls(QUrl("https://example.com/cat.jpg")))
    qtbot.waitUntil(lambda: "no network connection" in w.query_panel.message_text(), timeout=10_000)
    assert "example.com" in w.query_panel.message_text()
    assert "drop the file" in w.query_panel.message_text()
    w.opts.offline = True
    send_drop(w, _mime_urls(QUrl("https://example.com/dog.png")))
    qtbot.waitUntil(lambda: "Offline mode" in w.query_panel.message_text(), timeout=10_000)


def test_pause_resume_cancel(qtbot, make_window, tmp_path, monkeypatch, shared_extractor):
    monkeypatch.setattr(shared_extractor, "batch_size", 2)  # many small batches to pause between
    folder = tmp_path / "Many"
    make_photos(folder, 40)
    w = make_window()
    progress = []
    w.index_ctl.progress.connect(lambda p: progress.append(p) if p.stage == "extract" else None)
    w.add_folder(str(folder))
    qtbot.waitUntil(lambda: len(progress) >= 1, timeout=INDEX_TIMEOUT_MS)
    w.index_progress.pause_button.click()
    assert w.index_ctl.state == "paused"
    assert w.index_progress.pause_button.text() == "Resume"
    qtbot.waitUntil(lambda: w.index_ctl.parked, timeout=INDEX_TIMEOUT_MS)  # the batch ended
    # the worker posts its last batch's progress before it parks: deliver that one first
    QCoreApplication.processEvents()
    n = len(progress)
    qtbot.wait(600)  # the one fixed wait: a stretch of time in which nothing may happen
    assert len(progress) == n  # nothing is pulled from the generator while paused
    w.index_progress.pause_button.click()
    assert w.index_ctl.state == "running"
    qtbot.waitUntil(lambda: len(progress) > n, timeout=INDEX_TIMEOUT_MS)
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        w.index_progress.cancel_button.click()
    summary = blocker.args[0]
    assert summary.cancelled
    assert 0 < summary.indexed < 40
    qtbot.waitUntil(lambda: w.index_ctl.state == "idle")
    assert not w.index_progress.isVisible()
    assert w.lib.catalog.counts()["ok"] == summary.indexed


def test_close_during_indexing_keeps_store_loadable(
    qtbot, make_window, tmp_path, weights_file, monkeypatch, shared_extractor
):
    monkeypatch.setattr(shared_extractor, "batch_size", 4)
    folder = tmp_path / "Close"
    make_photos(folder, 40)
    w = make_window()
    seen = []
    w.index_ctl.progress.connect(lambda p: seen.append(p) if p.stage == "extract" else None)
    w.add_folder(str(folder))
    qtbot.waitUntil(lambda: len(seen) >= 1, timeout=INDEX_TIMEOUT_MS)
    data_dir = w.data_dir
    assert w.index_ctl.is_running
    w.close()  # says "Stopping…" and closes for real once the current batch has ended
    qtbot.waitUntil(lambda: getattr(w, "_shut", False), timeout=INDEX_TIMEOUT_MS)
    assert not w.index_ctl.is_running
    assert not w.search_ctl.thread.isRunning()
    cfg = ModelConfig(weights=str(weights_file), device="cpu", input_size=TEST_INPUT_SIZE)
    lib = Library(data_dir, cfg, index_backend="exact")
    try:
        n = lib.catalog.counts()["ok"]
        assert n >= 1
        index = lib.load_index()
        assert len(index) == n
        assert lib.search(str(folder / "img_0000.png"), k=1)
    finally:
        lib.close()


def test_gui_thread_stays_responsive_while_indexing(qtbot, make_window, tmp_path):
    folder = tmp_path / "Busy"
    make_photos(folder, 48)
    w = make_window()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    index_folder(qtbot, w, folder)
    timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 10
    assert max(gaps) < 1.0, f"GUI thread stalled {max(gaps):.2f} s"


def test_watcher_picks_up_new_file(qtbot, make_window, photos, tmp_path):
    w = make_window()
    index_folder(qtbot, w, photos)
    root = str(photos.resolve())
    qtbot.waitUntil(lambda: root in w.watcher.states and w.watcher.states[root].mode == "watching")
    assert w.library_panel.state_of(root) == "watching"
    extra = make_photos(tmp_path / "incoming", 1, seed=500, prefix="new")[0]
    target = photos / "sub" / "new_photo.png"
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS):
        target.parent.mkdir()  # its own rescan finds nothing new
    sub = str(target.parent.resolve())
    qtbot.waitUntil(lambda: sub in w.watcher.fs.directories())  # the new subfolder is watched
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        shutil.copy(extra, target)
    assert blocker.args[0].indexed == 1
    w.query_panel.count_spin.setValue(3)
    qtbot.waitUntil(lambda: w.search_ctl.k == 3)
    result = wait_results(
        qtbot, w, lambda: send_drop(w, _mime_urls(QUrl.fromLocalFile(str(extra))))
    )
    assert result.items[0].path == str(target)
    # a moved file keeps its vector (same content hash); a deleted one leaves the library
    moved = photos / "renamed.png"
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        target.rename(moved)
    assert blocker.args[0].moved == 1
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        moved.unlink()
    assert blocker.args[0].removed == 1


def test_weights_missing_dialog_offline_then_pick_file(qtbot, make_window, weights_file):
    from imgfinder.core.weights import default_weights_file

    w = make_window(wait_model=False, weights=None)
    qtbot.waitUntil(
        lambda: w.weights_dialog is not None and w.weights_dialog.state == "missing",
        timeout=20_000,
    )
    text = w.weights_dialog.message.text()
    assert default_weights_file().name in text and str(default_weights_file().parent) in text
    assert w.weights_dialog.isVisible()
    with qtbot.waitSignal(w.search_ctl.model_ready, timeout=60_000):
        w.weights_dialog.use_file(str(weights_file))
    assert w.settings.weights == str(weights_file)
    from imgfinder.gui.settings import GuiSettings

    assert GuiSettings.load(w.data_dir).weights == str(weights_file)  # remembered


def test_settings_change_reopens_and_offers_reindex(qtbot, make_window, photos):
    w = make_window()
    index_folder(qtbot, w, photos)
    old_model = w.model_info.model_id
    w.open_settings()
    dlg = w.settings_dialog
    assert dlg.data_dir.text() == str(w.data_dir)  # shown, not hidden
    assert dlg.values()["input_size"] == TEST_INPUT_SIZE and dlg.values()["device"] == "cpu"
    dlg.input_size.setValue(TEST_INPUT_SIZE + 32)
    dlg.thumb_size.setValue(192)
    wait_model(qtbot, w, dlg.accept)
    from imgfinder.gui.settings import GuiSettings

    saved = GuiSettings.load(w.data_dir)
    assert saved.input_size == TEST_INPUT_SIZE + 32 and saved.thumb_size == 192
    assert w.model_info.model_id != old_model and w.model_info.stale == 12
    assert w.reindex_box is not None
    assert w.results_view.delegate.size == 192
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        w.reindex_box.done(w.reindex_box.StandardButton.Yes)
    assert blocker.args[0].indexed == 12
    assert w.lib.catalog.model_counts() == {w.model_info.model_id: 12}


def test_missing_folder_keeps_entries_and_remove_asks(qtbot, make_window, photos, tmp_path):
    w = make_window()
    index_folder(qtbot, w, photos)
    root = str(photos.resolve())
    moved = tmp_path / "unplugged"
    photos.rename(moved)
    w.refresh_roots()
    qtbot.waitUntil(lambda: w.library_panel.state_of(root) == "missing")
    assert "missing" in w.library_panel.summary.text()
    assert w.lib.catalog.counts()["ok"] == 12  # entries kept
    moved.rename(photos)
    with qtbot.waitSignal(w.index_ctl.finished, timeout=INDEX_TIMEOUT_MS):
        w.refresh_roots()  # back again: rescanned
    assert w.lib.catalog.counts()["ok"] == 12

    w.library_panel.list.setCurrentRow(0)
    w.library_panel.remove_button.click()
    assert w.remove_box is not None and w.remove_box.isVisible()
    w.remove_box.done(w.remove_box.StandardButton.Cancel)
    assert w.lib.catalog.roots()
    w.confirm_remove_folder(root)
    w.remove_box.done(w.remove_box.StandardButton.Yes)
    qtbot.waitUntil(lambda: not w.lib.catalog.roots())
    assert w.lib.catalog.counts()["ok"] == 0


def test_keyboard_zoom_details_and_harmless_delete(qtbot, make_window, photos, monkeypatch):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QDesktopServices, QWheelEvent
    from PySide6.QtWidgets import QApplication

    w = make_window()
    index_folder(qtbot, w, photos)
    acts = {a.text(): {s.toString() for s in a.shortcuts()} for a in w.findChildren(QAction)}
    assert "Ctrl+O" in acts["&Open image…"] and "Ctrl+V" in acts["&Paste image"]
    assert "Ctrl+F" in acts["&Filter results"]
    assert "Alt+Left" in acts["&Back"] and "Alt+Right" in acts["&Forward"]
    w.show()
    qtbot.waitExposed(w)
    query = photos / "img_0001.png"
    wait_results(qtbot, w, lambda: send_drop(w, _mime_urls(QUrl.fromLocalFile(str(query)))))
    w.find_action.trigger()
    assert w.focusWidget() is w.query_panel.filter_edit
    w.results_view.setFocus()
    w.delete_action.trigger()
    assert "never deletes" in w.statusBar().currentMessage()
    assert w.lib.catalog.counts()["ok"] == 12 and all(p.exists() for p in photos.iterdir())

    # Ctrl+wheel zooms the grid
    before = w.settings.thumb_size
    vp = w.results_view.viewport()
    pos = QPointF(vp.rect().center())
    wheel = QWheelEvent(
        pos,
        QPointF(vp.mapToGlobal(pos.toPoint())),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.ControlModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(vp, wheel)
    assert w.settings.thumb_size == before + 32
    assert w.results_view.delegate.size == before + 32

    # selecting a result fills the details panel; its buttons act on that file
    w.results_view.setCurrentIndex(w.results_model.index(0))
    assert w.details.item.path == str(query)
    assert "96 × 72" in w.details.fields["Dimensions"].text()
    w.details.copy_button.click()
    assert QGuiApplication.clipboard().text() == str(query)
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    w.details.open_button.click()
    assert opened and opened[0].toLocalFile() == str(query)
    qtbot.waitUntil(
        lambda: w.details.preview.pixmap() is not None and not w.details.preview.pixmap().isNull()
    )

    # the panel describes search results: on the Duplicates tab it shows none (not a stale
    # one beside the groups), and the selected result again back on Search
    w.views.setCurrentWidget(w.dupes_view)
    assert w.details.item is None and not w.details.copy_button.isEnabled()
    assert "Search tab" in w.details.preview.text() and w.search.match_section.isHidden()
    w.views.setCurrentWidget(w.search)
    assert w.details.item.path == str(query) and not w.search.match_section.isHidden()


def test_startup_rescan_catches_changes_made_while_closed(qtbot, make_window, photos):
    w = make_window()
    index_folder(qtbot, w, photos)
    w.close()
    make_photos(photos, 1, seed=900, prefix="later")
    (photos / "img_0000.png").unlink()
    w2 = make_window(wait_model=False)
    with qtbot.waitSignal(w2.index_ctl.finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        pass
    summary = blocker.args[0]
    assert summary.indexed == 1 and summary.removed == 1


def test_weights_download_with_progress(qtbot, make_window, weights_file, monkeypatch):
    """With network: the default weights download in a worker while the dialog shows progress."""
    from imgfinder.core.weights import default_weights_file
    from imgfinder.gui import workers

    target = default_weights_file()
    data = weights_file.read_bytes()

    def fake_download(progress, spec=None):
        step = len(data) // 4
        for done in range(step, len(data) + 1, step):
            progress(min(done, len(data)), len(data))
            time.sleep(0.15)
        target.write_bytes(data)
        return target

    monkeypatch.setattr(workers, "download_default", fake_download)
    w = make_window(wait_model=False, weights=None)
    qtbot.waitUntil(lambda: w.weights_dialog is not None, timeout=10_000)
    dialog = w.weights_dialog
    assert dialog.state == "downloading"
    qtbot.waitUntil(lambda: dialog.progress.value() > 0, timeout=10_000)
    with qtbot.waitSignal(w.search_ctl.model_ready, timeout=60_000):
        pass
    assert target.is_file() and w.weights_dialog is None
    assert w.model_info.weights == str(target)


def test_run_app_starts_and_quits(qtbot, weights_file, monkeypatch, shared_extractor):
    import argparse

    from PySide6.QtWidgets import QApplication

    from imgfinder.cli import DEFAULTS
    from imgfinder.gui import app as gui_app
    from imgfinder.gui.main_window import MainWindow
    from tests.gui_helpers import share_extractor

    share_extractor(monkeypatch, shared_extractor)
    args = argparse.Namespace(
        **{**DEFAULTS, "weights": str(weights_file), "device": "cpu", "input_size": TEST_INPUT_SIZE}
    )
    seen = []

    def close_when_ready() -> None:
        wins = [x for x in QApplication.topLevelWidgets() if isinstance(x, MainWindow)]
        if wins and wins[0].model_info is not None:
            seen.append(wins[0])
            wins[0].close()
        else:
            QTimer.singleShot(50, close_when_ready)

    QTimer.singleShot(50, close_when_ready)
    assert gui_app.run_app(args) == 0
    assert seen and seen[0].windowIcon() is not None
    assert not seen[0].search_ctl.thread.isRunning()


def _splitter(qtbot, orientation=Qt.Orientation.Vertical, sizes=(440, 340)) -> QSplitter:
    split = QSplitter(orientation)
    for text in ("a", "b"):
        split.addWidget(QLabel(text))
    qtbot.addWidget(split)
    split.setSizes(list(sizes))
    return split


def test_restore_splitter_applies_a_saved_state_and_ignores_anything_else(qtbot):
    saved = state_hex(_splitter(qtbot, sizes=(100, 300)))
    split = _splitter(qtbot)
    assert restore_splitter(split, saved)
    assert state_hex(split) == saved
    split = _splitter(qtbot)
    before = state_hex(split)
    window = QMainWindow()
    qtbot.addWidget(window)
    unusable = [
        None,
        "",
        "not a splitter state",
        "000000ff00000001",  # a splitter's marker and version, then nothing
        saved[: len(saved) // 2],  # cut short
        state_hex(_splitter(qtbot, Qt.Orientation.Horizontal)),  # another kind of splitter
        state_hex(window),  # a main window's layout starts with the same marker
    ]
    for value in unusable:
        assert not restore_splitter(split, value), value
        assert state_hex(split) == before, value
    assert split.orientation() == Qt.Orientation.Vertical and split.handleWidth() > 0


def _shown(qtbot, w):
    w.show()
    qtbot.waitExposed(w)
    return w


def test_results_splitter_position_survives_a_restart(qtbot, make_window):
    w = _shown(qtbot, make_window())
    split = w.search_split
    default = split_ratio(split)
    split.setSizes([150, 450])
    moved = split_ratio(split)
    assert moved < default - 0.2  # far enough from the default to tell them apart
    w.close()
    w = _shown(qtbot, make_window())
    assert split_ratio(w.search_split) == pytest.approx(moved, abs=0.03)
    w.close()
    # an unusable saved position: the default layout, not a broken splitter
    settings = GuiSettings.load(w.data_dir)
    assert settings.search_split_state
    settings.search_split_state = "000000ff00000001" + "zz"
    settings.save(w.data_dir)
    w = _shown(qtbot, make_window())
    assert w.search_split.orientation() == Qt.Orientation.Vertical
    assert split_ratio(w.search_split) == pytest.approx(default, abs=0.03)

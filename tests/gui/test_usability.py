"""The window as a new user meets it: shortcuts, counts, closing while indexing, first run."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QAction, QKeySequence  # noqa: E402
from PySide6.QtWidgets import QApplication, QMenu  # noqa: E402

from imgfinder.gui.window_parts import unique_shortcuts  # noqa: E402


def _menu_actions(w) -> list[QAction]:
    out = []
    for menu in w.menuBar().findChildren(QMenu):
        for a in menu.actions():
            if a.shortcuts() and a not in out:
                out.append(a)
    return out + [a for a in w.actions() if a.shortcuts() and a not in out]


def test_unique_shortcuts_drops_repeats(qapp):
    K = QKeySequence.StandardKey
    seqs = unique_shortcuts([K.Quit, "Ctrl+Q", "", "Alt+Left", "Alt+Left"])
    assert [s.toString() for s in seqs].count("Ctrl+Q") == 1
    assert [s.toString() for s in seqs].count("Alt+Left") == 1
    assert all(not s.isEmpty() for s in seqs)


def test_every_shortcut_triggers_its_action(qtbot, make_window):
    w = make_window()
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)
    actions = _menu_actions(w)
    names = {a.text().replace("&", "") for a in actions}
    assert {"Quit", "Back", "Forward", "Add folder…", "Open image…"} <= names
    owner: dict[str, str] = {}
    for a in actions:  # no key sequence is held twice, by one action or by two
        for s in a.shortcuts():
            key = s.toString()
            assert key not in owner, f"{key} is both {owner[key]} and {a.text()}"
            owner[key] = a.text()
    fired: list[str] = []
    for a in actions:
        a.triggered.disconnect()  # record the trigger instead of opening dialogs or quitting
        a.triggered.connect(lambda _c=False, t=a.text(): fired.append(t))
        a.setEnabled(True)
    for a in actions:
        for s in a.shortcuts():
            fired.clear()
            combo = s[0]
            w.results_view.setFocus()
            qtbot.keyClick(w.results_view, combo.key(), combo.keyboardModifiers())
            assert fired == [a.text()], f"{s.toString()} did not trigger {a.text()}"
    for key in ("Ctrl+Q", "Alt+Left", "Alt+Right"):
        assert key in owner


def test_shortcut_list_names_each_action_once(make_window):
    w = make_window(wait_model=False)
    from imgfinder.gui.menus import shortcut_lines

    lines = shortcut_lines(w)
    names = [line.split(":")[0] for line in lines]
    assert len(names) == len(set(names))
    assert any(line.startswith("Add folder…") for line in lines)
    assert not any(
        "not available" in a.text() for m in w.menuBar().findChildren(QMenu) for a in m.actions()
    )


def test_closing_while_indexing_says_stopping_and_the_next_run_goes_on(
    qtbot, make_window, tmp_path
):
    import time

    from imgfinder.gui.status_bar import STOPPING_TEXT
    from tests.gui_helpers import make_photos

    folder = tmp_path / "Many"
    n = 96
    make_photos(folder, n)
    w = make_window()
    w.show()
    qtbot.waitExposed(w)
    last = {"t": 0.0, "p": None}

    def seen(p):
        if p.stage == "extract":
            last["t"], last["p"] = time.monotonic(), p

    w.index_ctl.progress.connect(seen)
    with qtbot.waitSignal(w.index_ctl.batch_done, timeout=120_000):
        w.add_folder(str(folder))
    assert last["p"].done < n  # still indexing
    w.close()
    assert w.isVisible()  # not frozen in a blocking wait: it says what it does
    assert w.index_ctl.state == "stopping"
    assert w.index_progress.label.text() == STOPPING_TEXT
    assert "Stopping" in w.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=60_000)
    closed = time.monotonic()
    assert closed - last["t"] < 2.0, "the window closed more than 2 s after the last batch"
    stopped_at = last["p"].done
    # the next session goes on counting from there, out of the whole folder
    w2 = make_window()
    first = []
    w2.index_ctl.progress.connect(lambda p: first.append(p) if p.stage == "extract" else None)
    with qtbot.waitSignal(w2.index_ctl.finished, timeout=120_000):
        pass
    assert first and first[0].total == n
    assert first[0].done > stopped_at and first[-1].done == n


def test_paused_indexing_shows_no_rate_or_eta(qapp):
    from imgfinder.core.types import Progress
    from imgfinder.gui.status_bar import IndexProgress, progress_text

    p = Progress("extract", 304, 968, 11.3, 70.0)
    assert "images/s" in progress_text(p) and "ETA" in progress_text(p)
    bar = IndexProgress()
    bar.set_state("running")
    bar.set_progress(p)
    bar.set_state("paused")
    assert bar.label.text() == "Paused · Indexing 304/968"
    bar.set_progress(p)
    assert "ETA" not in bar.label.text() and "images/s" not in bar.label.text()


def test_counts_agree_between_status_bar_cli_index_and_status(qtbot, make_window, tmp_path, capsys):
    from imgfinder.cli import main
    from tests.common import TEST_INPUT_SIZE
    from tests.gui_helpers import index_folder, make_photos

    folder = tmp_path / "Photos"
    make_photos(folder, 6)
    for i in range(4):  # four files that are no images
        (folder / f"broken{i}.jpg").write_bytes(b"not a photo")
    w = make_window()
    index_folder(qtbot, w, folder)
    qtbot.waitUntil(lambda: "library:" in w.statusBar().currentMessage(), timeout=10_000)
    bar = w.statusBar().currentMessage()
    assert "4 more skipped" in bar and "library: 6 photos, 4 skipped" in bar
    qtbot.waitUntil(lambda: w.skipped_button.text() == "4 skipped", timeout=10_000)
    # a second run finds nothing new: the same totals, not "skipped 0"
    with qtbot.waitSignal(w.index_ctl.finished, timeout=60_000):
        w.rescan()
    qtbot.waitUntil(lambda: "Nothing new" in w.statusBar().currentMessage(), timeout=10_000)
    assert "library: 6 photos, 4 skipped" in w.statusBar().currentMessage()
    data = w.data_dir
    w.close()
    args = [
        "--data-dir",
        str(data),
        "--weights",
        w.opts.weights,
        "--device",
        "cpu",
        "--input-size",
        str(TEST_INPUT_SIZE),
        "--index",
        "exact",
    ]
    capsys.readouterr()
    assert main([*args, "index"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Nothing new or changed · library: 6 photos, 4 skipped")
    assert main([*args, "status"]) == 0
    out = capsys.readouterr().out
    assert "images: 6 photos, 4 skipped" in out
    assert "failed" not in out and "unchanged" not in out


def test_pasted_image_is_called_pasted(qapp):
    import io

    from PIL import Image
    from PySide6.QtCore import QMimeData

    from imgfinder.gui.query import from_mime

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    mime = QMimeData()
    mime.setData("image/png", buf.getvalue())
    assert from_mime(mime, how="pasted").query.label == "pasted PNG image"
    assert from_mime(mime).query.label == "dropped PNG image"


def test_result_header_counts_what_is_shown(qtbot, make_window, tmp_path):
    from imgfinder.gui.query import Query
    from tests.gui_helpers import index_folder, make_photos, wait_results

    folder = tmp_path / "Photos"
    make_photos(folder, 10)
    w = make_window()
    index_folder(qtbot, w, folder)
    query = folder / "img_0001.png"
    wait_results(qtbot, w, lambda: w.search.search_query(Query(label=query.name, path=str(query))))
    assert w.query_panel.busy.text().startswith("10 results in ")
    w.query_panel.min_score.setValue(0.999)  # only the query itself scores 1
    qtbot.waitUntil(lambda: w.results_model.rowCount() == 1)
    assert w.query_panel.busy.text().startswith("1 of 10 results shown")


def test_weights_dialog_speaks_the_apps_language(qapp):
    from imgfinder.core.weights import default_weights_file, offline_message
    from imgfinder.gui.weights_dialog import WeightsDialog

    dlg = WeightsDialog()
    dlg.show_missing(offline_message("download failed: [Errno -2] Name or service not known"))
    text = dlg.message.text()
    for cli_only in ("Errno", "--weights", "IMGFINDER_WEIGHTS", "Name or service"):
        assert cli_only not in text
    assert "could not be reached" in text and "offline" in text
    assert default_weights_file().name in text and str(default_weights_file().parent) in text
    assert "Choose weights file" in text
    dlg.show_missing(offline_message("file not found: /x/y.pth"))
    assert "/x/y.pth does not exist" in dlg.message.text()


def test_without_weights_the_empty_grid_says_so(qtbot, make_window, tmp_path):
    from imgfinder.gui.window_parts import (
        EMPTY_TEXT,
        NO_WEIGHTS_TEXT,
        NOT_INDEXED_TEXT,
        empty_grid_text,
    )

    assert empty_grid_text(weights_missing=False, folders=0, photos=0) == EMPTY_TEXT
    assert empty_grid_text(weights_missing=False, folders=1, photos=0) == NOT_INDEXED_TEXT
    w = make_window(wait_model=False, weights=None)
    w.lib.add_root(tmp_path)  # a folder is already in the library
    qtbot.waitUntil(lambda: w.weights_dialog is not None and w.weights_dialog.state == "missing")
    w.weights_dialog.reject()
    qtbot.waitUntil(lambda: w.results_view.empty_text == NO_WEIGHTS_TEXT)
    assert "Add a folder" not in w.results_view.empty_text


def test_failed_cli_index_does_not_add_the_folder(tmp_path, capsys):
    from imgfinder.cli import main
    from tests.gui_helpers import make_photos

    make_photos(tmp_path / "pics", 2)
    data = tmp_path / "data"
    code = main(["--data-dir", str(data), "--offline", "index", str(tmp_path / "pics")])
    assert code == 3
    assert "no folder was added" in capsys.readouterr().err
    assert main(["--data-dir", str(data), "roots", "list"]) == 0
    assert capsys.readouterr().out.strip() == ""


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_layout_fits_and_the_grid_shows_three_rows(qtbot, make_window, size):
    from imgfinder.gui.panes import UNFOLDED_MIN

    w = make_window(wait_model=False)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: getattr(w, "_laid_out", False))
    qtbot.waitUntil(lambda: w.first_layout_done)  # it runs right after the window is shown
    assert w.minimumSizeHint().width() <= size[0] and w.width() == size[0]
    rv = w.results_view

    def rows() -> float:
        return rv.viewport().height() / rv.gridSize().height()

    assert rv.delegate.size == 160  # the default thumbnail size
    qtbot.waitUntil(lambda: rows() >= 3, timeout=2000)  # once the splitter has been laid out
    assert rows() >= 3, f"{rows():.2f} rows of thumbnails at {size}"
    assert rv.viewport().width() // rv.gridSize().width() >= 3
    for dock in (w.library_dock, w.details_dock):
        assert dock.width() >= 200, f"{dock.windowTitle()} is {dock.width()} px wide"
    pane = w.explain_pane
    assert pane.folded or pane.height() >= UNFOLDED_MIN
    if size[1] >= 1000:
        assert not pane.folded  # room for the explanations next to 3 rows
        assert pane.currentWidget().height() >= UNFOLDED_MIN - 40
    w.show_skipped()  # beside the details, not under the grid
    qtbot.waitUntil(lambda: w.skipped.isVisible())
    qtbot.waitUntil(lambda: rows() >= 3)
    w.views.setCurrentWidget(w.dupes_view)
    qtbot.waitUntil(lambda: w.dupes_view.isVisible())
    assert w.width() == size[0]
    assert w.dupes_view.group_list.width() >= 200
    # folding and unfolding by clicking the open tab
    w.views.setCurrentIndex(0)
    was = pane.folded
    pane._tab_clicked(pane.currentIndex())
    assert pane.folded != was
    pane._tab_clicked(pane.currentIndex())
    assert pane.folded == was


def test_system_dark_palette_is_followed(qapp, monkeypatch):
    from PySide6.QtGui import QPalette

    from imgfinder.gui.app import apply_system_palette

    before = qapp.palette()
    try:
        monkeypatch.setenv("IMGFINDER_THEME", "dark")
        assert apply_system_palette(qapp) == "dark"
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() < 128
        monkeypatch.setenv("IMGFINDER_THEME", "light")
        assert apply_system_palette(qapp) == "light"
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() >= 128
    finally:
        qapp.setPalette(before)


def test_results_sort_and_filter_by_folder_date_and_score(qapp):
    from imgfinder.core.types import Hit
    from imgfinder.gui.items import ResultItem
    from imgfinder.gui.results_model import ResultsModel, photo_date
    from imgfinder.gui.thumbnails import ThumbnailLoader

    day = 86_400
    now = 1_700_000_000.0
    items = [
        ResultItem(Hit(1, "/p/a/x.jpg", 0.9), mtime_ns=int((now - 400 * day) * 1e9)),
        ResultItem(Hit(2, "/p/b/y.jpg", 0.8), mtime_ns=int((now - 2 * day) * 1e9)),
        ResultItem(Hit(3, "/p/a/z.jpg", 0.5), mtime_ns=int((now - 20 * day) * 1e9)),
    ]
    loader = ThumbnailLoader()
    m = ResultsModel(loader)
    m.now = now
    m.set_items(items)
    paths = lambda: [it.path for it in m.items()]  # noqa: E731
    assert paths() == ["/p/a/x.jpg", "/p/b/y.jpg", "/p/a/z.jpg"]  # best match first
    m.set_sort("newest")
    assert paths() == ["/p/b/y.jpg", "/p/a/z.jpg", "/p/a/x.jpg"]
    m.set_sort("oldest")
    assert paths()[0] == "/p/a/x.jpg"
    m.set_sort("folder")
    assert paths() == ["/p/a/x.jpg", "/p/a/z.jpg", "/p/b/y.jpg"]
    assert m.folders() == ["/p/a", "/p/b"]
    m.set_filter(folder="/p/a")
    assert paths() == ["/p/a/x.jpg", "/p/a/z.jpg"]
    m.set_filter(folder=None, date=2)  # past month
    assert sorted(paths()) == ["/p/a/z.jpg", "/p/b/y.jpg"]
    m.set_filter(date=4)  # older than a year
    assert paths() == ["/p/a/x.jpg"]
    m.set_filter(date=0, min_score=0.85)
    assert paths() == ["/p/a/x.jpg"]
    assert photo_date(items[1]) == now - 2 * day
    loader.shutdown()


def test_multi_select_copies_every_selected_path(qtbot, make_window, tmp_path):
    from PySide6.QtCore import QItemSelectionModel
    from PySide6.QtGui import QGuiApplication

    from imgfinder.gui.items import Query
    from tests.gui_helpers import index_folder, make_photos, wait_results

    folder = tmp_path / "Photos"
    make_photos(folder, 8)
    w = make_window()
    index_folder(qtbot, w, folder)
    q = folder / "img_0002.png"
    wait_results(qtbot, w, lambda: w.search.search_query(Query(label=q.name, path=str(q))))
    sel = w.results_view.selectionModel()
    for row in (0, 2, 3):
        sel.select(w.results_model.index(row), QItemSelectionModel.SelectionFlag.Select)
    w.search.copy_selected_path()
    copied = QGuiApplication.clipboard().text().splitlines()
    assert copied == [w.results_model.item(r).path for r in (0, 2, 3)]
    assert "3 paths" in w.statusBar().currentMessage()
    opened = []
    import imgfinder.gui.desktop as desktop

    orig_open, orig_show = desktop.open_path, desktop.show_in_folder
    desktop.open_path = lambda p: opened.append(("open", p)) or True
    desktop.show_in_folder = lambda p: opened.append(("show", p)) or True
    try:
        w.search.open_selected()
        w.search.reveal_selected()
    finally:
        desktop.open_path, desktop.show_in_folder = orig_open, orig_show
    assert [p for k, p in opened if k == "open"] == copied
    assert [p for k, p in opened if k == "show"] == [copied[0]]  # one folder: shown once


def test_settings_enter_means_ok_and_missing_weights_are_named(qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QDialogButtonBox, QFileDialog, QPushButton

    from imgfinder.core.weights import default_weights_file
    from imgfinder.gui.settings import Effective, GuiSettings, LaunchOptions
    from imgfinder.gui.settings_dialog import SettingsDialog

    eff = Effective.resolve(GuiSettings(), LaunchOptions(device="cpu"))
    dlg = SettingsDialog(GuiSettings(), eff, tmp_path / "data")
    qtbot.addWidget(dlg)
    assert not default_weights_file().is_file()
    assert "Missing: not downloaded yet" in dlg.model_note.text()
    ok = dlg.buttons.button(QDialogButtonBox.StandardButton.Ok)
    browse = next(b for b in dlg.findChildren(QPushButton) if b.text() == "Browse…")
    assert not browse.autoDefault() and ok.isDefault()
    chooser = []
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *a, **k: chooser.append(1) or ("", "")
    )
    dlg.show()
    qtbot.waitExposed(dlg)
    qtbot.mouseClick(browse, Qt.MouseButton.LeftButton)
    assert chooser == [1]
    with qtbot.waitSignal(dlg.accepted, timeout=2000):
        qtbot.keyClick(dlg, Qt.Key.Key_Return)  # Enter presses OK, not Browse… again
    assert chooser == [1]


def test_remove_folder_with_one_folder_asks_about_it(qtbot, make_window, tmp_path):
    folder = tmp_path / "Only"
    folder.mkdir()
    w = make_window(wait_model=False)
    w.lib.add_root(folder)
    w.refresh_roots()
    qtbot.waitUntil(lambda: len(w.library_panel.roots) == 1)
    w.library_panel.list.setCurrentRow(-1)  # nothing selected
    w.confirm_remove_folder()
    assert w.remove_box is not None and str(folder) in w.remove_box.text()
    w.remove_box.done(w.remove_box.StandardButton.Cancel)

"""The Duplicates view inside the main window: menu action, scan, library switch."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt  # noqa: E402

from imgfinder.gui.dupes_view import GROUP_LIST_MIN_WIDTH  # noqa: E402
from imgfinder.gui.settings import GuiSettings  # noqa: E402
from tests.gui_helpers import index_folder, split_ratio  # noqa: E402
from tests.imgutil import make_jpeg  # noqa: E402


def test_find_duplicates_from_the_menu(qtbot, make_window, tmp_path):
    photos = tmp_path / "dup-photos"
    for i in range(4):
        make_jpeg(photos / f"p{i}.jpg", size=(96, 72), seed=300 + i)
    shutil.copy(photos / "p1.jpg", photos / "p1 copy.jpg")
    w = make_window()
    index_folder(qtbot, w, photos)
    assert w.views.indexOf(w.dupes_view) >= 0
    with qtbot.waitSignal(w.dupes_view.scan_finished, timeout=60_000):
        w.find_duplicates()
    assert w.views.currentWidget() is w.dupes_view
    exact = [g for g in w.dupes_view.groups if g.tier == "exact"]
    assert len(exact) == 1
    names = sorted(p.rsplit("/", 1)[-1] for p in exact[0].paths)
    assert names == ["p1 copy.jpg", "p1.jpg"]


def _dupes_shown(qtbot, w):
    w.views.setCurrentWidget(w.dupes_view)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(lambda: sum(w.dupes_view.splitter.sizes()) > 0)
    return w


def test_duplicates_splitter_position_survives_a_restart(qtbot, make_window):
    w = _dupes_shown(qtbot, make_window())
    split = w.dupes_view.splitter
    default = split_ratio(split)
    split.setSizes([80, 700])  # the group list never collapses to a stub
    assert split.sizes()[0] >= GROUP_LIST_MIN_WIDTH
    split.setSizes([GROUP_LIST_MIN_WIDTH + 5, 900])  # narrower, yet still readable
    moved = split_ratio(split)
    assert moved < default - 0.05  # far enough from the default to tell them apart
    w.close()
    # a session that never opens the Duplicates tab keeps the saved position
    w = make_window()
    w.show()
    qtbot.waitExposed(w)
    assert w.views.currentWidget() is not w.dupes_view
    w.close()
    w = _dupes_shown(qtbot, make_window())
    assert split_ratio(w.dupes_view.splitter) == pytest.approx(moved, abs=0.03)
    assert w.dupes_view.group_list.width() >= GROUP_LIST_MIN_WIDTH
    w.close()
    # an unusable saved position: the default layout
    settings = GuiSettings.load(w.data_dir)
    settings.dupes_split_state = "not a splitter state"
    settings.save(w.data_dir)
    w = _dupes_shown(qtbot, make_window())
    assert w.dupes_view.splitter.orientation() == Qt.Orientation.Horizontal
    # the default split (its pixel share shifts a little with the window's restored size)
    assert split_ratio(w.dupes_view.splitter) == pytest.approx(default, abs=0.06)

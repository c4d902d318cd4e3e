"""The Duplicates view inside the main window: menu action, scan, library switch."""

from __future__ import annotations

import shutil

import pytest

from tests.gui_helpers import index_folder, window_factory
from tests.imgutil import make_jpeg


@pytest.fixture
def make_window(qtbot, weights_file, monkeypatch, shared_extractor):
    yield from window_factory(qtbot, weights_file, monkeypatch, shared_extractor)


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

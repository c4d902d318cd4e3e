"""The explanation views inside the main window, and `imgfinder gui IMAGE` searching on start."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QMimeData, QUrl  # noqa: E402

from imgfinder.core import colormap  # noqa: E402
from tests.common import TEST_INPUT_SIZE  # noqa: E402
from tests.gui_helpers import (  # noqa: E402
    MODEL_TIMEOUT_MS,
    index_folder,
    make_photos,
    send_drop,
    share_extractor,
    wait_results,
)

WAIT_MS = 60_000


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "Photos"
    make_photos(folder, 18)  # past centring.MIN_VECTORS: search centres on the library mean
    return folder


def _cosine_in(text: str) -> float:
    m = re.search(r"cosine\)? (-?\d+\.\d+)", text, re.IGNORECASE)
    assert m, text
    return float(m.group(1))


def test_search_explains_query_and_selected_result(
    qtbot, make_window, photos, tmp_path, monkeypatch
):
    from imgfinder.gui import explain_view

    w = make_window()
    w.show()
    index_folder(qtbot, w, photos)
    w.query_panel.count_spin.setValue(5)
    qtbot.waitUntil(lambda: w.search_ctl.k == 5)  # the count is debounced
    assert not w.export_action.isEnabled()
    query = photos / "img_0002.png"
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(query))])
    result = wait_results(qtbot, w, lambda: send_drop(w.query_panel.drop_zone, mime))
    assert len(result.items) == 5

    # the query's attention overlay
    qe = w.query_explain
    qtbot.waitUntil(lambda: qe.current is not None, timeout=WAIT_MS)
    assert qe.view.has_photo() and not qe.view.heat_item.pixmap().isNull()
    assert "img_0002.png" in qe.status.text()
    assert not w.export_action.isEnabled()  # nothing selected yet

    # selecting a result shows the pair, its score and both maps; the details panel follows
    mv = w.match_view
    item = w.results_model.item(1)
    with qtbot.waitSignal(mv.explained, timeout=WAIT_MS):
        w.results_view.setCurrentIndex(w.results_model.index(1))
    assert w.details.item is item
    assert item.path.endswith(mv.result_caption.text().split("Result: ")[-1])
    # the explanation decomposes the score search shows: the centred cosine
    assert "similarity (centred cosine)" in mv.score_label.text()
    assert _cosine_in(mv.score_label.text()) == pytest.approx(item.score, abs=2e-3)
    assert _cosine_in(w.match_summary.text()) == pytest.approx(item.score, abs=2e-3)
    assert "Attention" in w.match_summary.text() and "Global" in w.match_summary.text()
    for view in (mv.query_view, mv.result_view):
        assert view.has_photo() and not view.heat_item.pixmap().isNull()
    assert w.export_action.isEnabled()

    # one branch/opacity setting for both panels
    mv.controls.set_branch("global")
    assert qe.controls.branch() == "global" and "global" in qe.status.text()
    qe.controls.set_opacity(0.7)
    assert mv.controls.opacity() == pytest.approx(0.7)

    # File > Export explanation (Ctrl+E) writes the side-by-side PNG
    assert "Ctrl+E" in {s.toString() for s in w.export_action.shortcuts()}
    out = tmp_path / "why.png"
    monkeypatch.setattr(explain_view.QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    w.export_action.trigger()
    assert out.is_file() and out.stat().st_size > 1000
    with Image.open(out) as img:
        assert img.format == "PNG"
        q, r = mv.current.query.photo, mv.current.result.photo
        assert img.width == q.width + colormap.GAP + r.width
        assert img.height > max(q.height, r.height)
    assert str(out) in w.statusBar().currentMessage()

    # a result that cannot be read: the status bar and the details panel say so
    gone = w.results_model.item(3)
    Path(gone.path).unlink()
    with qtbot.waitSignal(mv.failed, timeout=WAIT_MS):
        w.results_view.setCurrentIndex(w.results_model.index(3))
    assert "Cannot explain" in w.statusBar().currentMessage()
    assert "No explanation" in w.match_summary.text()
    assert not w.export_action.isEnabled()
    assert mv.current is None and not mv.result_view.has_photo()  # not the previous pair
    assert Path(gone.path).name in mv.status.text()

    # no selection: export is off and the views go back to their empty state
    w.query_panel.min_score.setValue(0.9999)  # the filter resets the grid and its selection
    assert w.details.item is None
    assert not w.export_action.isEnabled()
    assert mv.current is None and not mv.result_view.has_photo()
    assert "Select a result" in w.match_summary.text()


def test_start_searches_for_the_image_given_on_the_command_line(
    qtbot, weights_file, monkeypatch, shared_extractor, photos
):
    from PySide6.QtWidgets import QApplication

    from imgfinder.cli import DEFAULTS
    from imgfinder.gui import app as gui_app

    share_extractor(monkeypatch, shared_extractor)
    query = photos / "img_0005.png"
    args = argparse.Namespace(
        **{
            **DEFAULTS,
            "weights": str(weights_file),
            "device": "cpu",
            "input_size": TEST_INPUT_SIZE,
            "index_backend": "exact",
            "open": [QUrl.fromLocalFile(str(query)).toString(), "ignored.jpg"],
        }
    )
    results = []
    w = None
    try:
        w = gui_app.start(args)
        qtbot.addWidget(w)
        assert w.isVisible()
        assert QApplication.instance().desktopFileName() == "io.github.imgfinder.ImgFinder"
        assert QApplication.instance().applicationName() == "imgfinder"
        w.search_ctl.results.connect(results.append)
        qtbot.waitUntil(lambda: bool(results), timeout=MODEL_TIMEOUT_MS)
        assert results[0].query.path == str(query)
        assert w.search_ctl.current.path == str(query)
    finally:
        if w is not None:
            w.close()


def test_command_line_arguments(tmp_path, monkeypatch, photos):
    from imgfinder.gui.search_pane import incoming_from_arg

    photo = photos / "img_0001.png"
    found = incoming_from_arg(str(photo))
    assert found.query.path == str(photo) and found.query.label == "img_0001.png"
    assert incoming_from_arg(QUrl.fromLocalFile(str(photo)).toString()).query.path == str(photo)
    monkeypatch.chdir(photos)
    assert incoming_from_arg("img_0001.png").query.path == str(photo)  # made absolute
    assert incoming_from_arg("https://example.com/cat.jpg").url == "https://example.com/cat.jpg"
    assert incoming_from_arg(str(tmp_path / "missing.jpg")) is None
    assert incoming_from_arg(str(photos)) is None  # a folder is not an image


def test_command_line_image_that_is_missing_or_on_the_web(qtbot, make_window, tmp_path):
    w = make_window()
    w.open_on_start([str(tmp_path / "gone.jpg")])
    assert "gone.jpg" in w.query_panel.message_text()
    w.open_on_start([])  # nothing given: nothing happens
    assert w.search_ctl.current is None
    # a web address takes the dropped-URL path (downloads are off in the tests)
    w.open_on_start(["https://example.com/cat.jpg"])
    qtbot.waitUntil(lambda: "no network connection" in w.query_panel.message_text())
    assert "example.com" in w.query_panel.message_text()

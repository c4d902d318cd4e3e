"""Explanation widgets: they follow the selection, sync zoom and pan, and export a PNG."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("PySide6")

from PIL import Image  # noqa: E402

from imgfinder.core import colormap  # noqa: E402
from imgfinder.gui import explain_view  # noqa: E402
from imgfinder.gui.explain_jobs import ActivationCache, source_key  # noqa: E402
from imgfinder.gui.explain_view import MatchView, QueryExplainPanel  # noqa: E402
from tests.imgutil import make_jpeg  # noqa: E402

WAIT_MS = 60_000  # the shared CI box can be slow; the work itself takes well under a second


@pytest.fixture
def photos(tmp_path):
    return [
        make_jpeg(tmp_path / "query.jpg", size=(120, 80), seed=1),
        make_jpeg(tmp_path / "first.jpg", size=(90, 120), seed=2),
        make_jpeg(tmp_path / "second.jpg", size=(100, 100), seed=3),
    ]


def test_query_panel_shows_attention_and_follows_controls(qtbot, shared_extractor, photos):
    panel = QueryExplainPanel(shared_extractor, cache=ActivationCache())
    qtbot.addWidget(panel)
    panel.resize(420, 360)
    panel.show()
    with qtbot.waitSignal(panel.query_ready, timeout=WAIT_MS) as blocker:
        panel.set_query(str(photos[0]))
    act = blocker.args[0]
    assert act.image_size == (120, 80) and panel.activations() is act
    assert panel.view.has_photo() and not panel.view.heat_item.pixmap().isNull()
    assert "fused" in panel.status.text()
    fused_key = panel.view.heat_item.pixmap().cacheKey()
    panel.controls.set_branch("global")
    assert "global" in panel.status.text()
    assert panel.view.heat_item.pixmap().cacheKey() != fused_key
    panel.controls.set_opacity(0.8)
    assert panel.view.heat_item.opacity() == pytest.approx(0.8)
    panel.controls.set_heat_visible(False)
    assert not panel.view.heat_item.isVisible()
    assert not panel.controls.opacity_slider.isEnabled()
    panel.clear()
    assert not panel.view.has_photo() and panel.activations() is None
    panel.shutdown()


def test_match_view_follows_selection_syncs_and_exports(
    qtbot, shared_extractor, photos, tmp_path, monkeypatch
):
    cache = ActivationCache()
    view = MatchView(shared_extractor, cache=cache)
    qtbot.addWidget(view)
    view.resize(700, 420)
    view.show()
    query, first, second = (str(p) for p in photos)
    view.set_query(query)
    with qtbot.waitSignal(view.explained, timeout=WAIT_MS) as blocker:
        view.set_result(first)
    e = blocker.args[0]
    assert e.query_map.sum() == pytest.approx(e.score, abs=1e-6)
    assert e.result_map.sum() == pytest.approx(e.score, abs=1e-6)
    assert f"{e.score:.4f}" in view.score_label.text()
    assert "first.jpg" in view.result_caption.text()
    assert view.query_view.has_photo() and view.result_view.has_photo()
    assert view.export_button.isEnabled()

    # a quick second click wins over the first; the query comes from the cache
    view.set_result(first)
    view.set_result(second)
    qtbot.waitUntil(lambda: "second.jpg" in view.result_caption.text(), timeout=WAIT_MS)
    assert not view.busy()
    assert len(cache) == 3

    # branch selector: the label and the maps change, the sums still hold
    view.controls.set_branch("attention")
    att = view.explanation()
    assert att.branch == "attention" and "attention (ECA" in view.score_label.text()
    assert att.result_map.sum() == pytest.approx(att.branch_scores["attention"], abs=1e-6)

    # zoom and pan are shared
    qv, rv = view.query_view, view.result_view
    assert qv.fit_mode and rv.fit_mode
    qv.zoom_by(3.0)
    assert qv.zoom == pytest.approx(3.0) and rv.zoom == pytest.approx(3.0)
    for v in (qv, rv):  # zoom is relative to each photo's own fit
        assert v.transform().m11() == pytest.approx(v.fit_scale() * 3.0, rel=1e-6)
    bar_q, bar_r = view.query_view.horizontalScrollBar(), view.result_view.horizontalScrollBar()
    assert bar_q.maximum() > 0 and bar_r.maximum() > 0
    bar_q.setValue(bar_q.maximum())
    assert bar_r.value() == bar_r.maximum()
    view.result_view.verticalScrollBar().setValue(0)
    assert view.query_view.verticalScrollBar().value() == 0
    view.result_view.fit()
    assert view.query_view.fit_mode and view.result_view.fit_mode

    # export: the method, and the button's dialog path
    out = view.export_png(tmp_path / "explanation.png")
    with Image.open(out) as img:
        q_photo, r_photo = view.current.query.photo, view.current.result.photo
        assert img.width == q_photo.width + colormap.GAP + r_photo.width
        assert img.height > max(q_photo.height, r_photo.height)
    chosen = tmp_path / "chosen.png"
    monkeypatch.setattr(
        explain_view.QFileDialog, "getSaveFileName", lambda *a, **k: (str(chosen), "")
    )
    view.export_button.click()
    assert chosen.exists()
    view.shutdown()


def test_match_view_reports_errors_and_prefetches(qtbot, shared_extractor, photos, tmp_path):
    cache = ActivationCache()
    view = MatchView(shared_extractor, cache=cache)
    qtbot.addWidget(view)
    view.set_query(str(photos[0]))
    with qtbot.waitSignal(view.failed, timeout=WAIT_MS) as blocker:
        view.set_result(str(tmp_path / "gone.jpg"))
    assert "gone.jpg" in blocker.args[0] and "gone.jpg" in view.status.text()
    view.prefetch([str(photos[1]), str(photos[2])])
    key = (shared_extractor.model_id, source_key(str(photos[2])))
    qtbot.waitUntil(lambda: key in cache, timeout=WAIT_MS)
    assert len(cache) == 3  # the query and both results
    view.shutdown()


def test_qimage_and_callable_sources(qtbot, shared_extractor, photos):
    """What the main window holds: a lazy extractor with a lock, a pasted QImage query and a
    result given as a callable (resolved in the worker)."""
    from PySide6.QtGui import QImage

    view = MatchView(cache=ActivationCache())
    qtbot.addWidget(view)
    lock = threading.Lock()  # e.g. the search worker's, held while the model runs
    view.set_extractor(lambda: shared_extractor, lock=lock)
    image = QImage(str(photos[0]))
    assert not image.isNull()
    view.set_query(image, label="pasted image")
    with qtbot.waitSignal(view.explained, timeout=WAIT_MS) as blocker:
        view.set_result(lambda: str(photos[1]), label="first.jpg")
    e = blocker.args[0]
    assert e.result_map.sum() == pytest.approx(e.score, abs=1e-6)
    assert "pasted image" in view.query_caption.text()
    assert view.current.query.act.image_size == (120, 80)
    view.shutdown()

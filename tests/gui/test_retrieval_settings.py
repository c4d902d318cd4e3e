"""Settings -> Model: attention head and pooling; Settings: search re-ranking (issue 18)."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from imgfinder.core.library import Library, run  # noqa: E402
from imgfinder.gui.items import Query, SearchRequest  # noqa: E402
from imgfinder.gui.settings import Effective, GuiSettings, LaunchOptions  # noqa: E402
from imgfinder.gui.settings_dialog import SettingsDialog  # noqa: E402
from imgfinder.gui.workers import search_hits  # noqa: E402
from tests.common import TEST_INPUT_SIZE  # noqa: E402
from tests.gui_helpers import make_photos  # noqa: E402


def test_retrieval_settings_round_trip_and_fall_back(tmp_path):
    s = GuiSettings(attention="cbam", pooling="gem", rerank="verify,dba+aqe")
    s.normalise()
    assert s.rerank == "dba+aqe,verify"
    s.save(tmp_path)
    assert GuiSettings.load(tmp_path) == s
    odd = GuiSettings(attention="eca", pooling="avg", rerank="diffusion,qe")  # qe: unknown
    odd.normalise()
    assert (odd.attention, odd.pooling, odd.rerank) == (None, None, "")
    eff = Effective.resolve(s, LaunchOptions())
    cfg = eff.model_config()
    assert (cfg.attention, cfg.pooling) == ("cbam", "gem")
    assert Effective.resolve(s, LaunchOptions(attention="eca")).attention == "eca"


def test_dialog_offers_the_heads_and_re_ranking(qtbot, tmp_path, weights_file):
    eff = Effective(
        device="cpu",
        input_size=TEST_INPUT_SIZE,
        index_backend="exact",
        weights=str(weights_file),
        head=None,
        attention="cbam",
    )
    dlg = SettingsDialog(GuiSettings(attention="cbam", rerank="aqe"), eff, tmp_path / "data")
    qtbot.addWidget(dlg)
    assert dlg.values()["attention"] == "cbam" and dlg.values()["pooling"] is None
    assert dlg.values()["rerank"] == "aqe"
    assert "/cbam0/" in dlg.current_model_id()
    dlg.pooling.setCurrentIndex(dlg.pooling.findData("gem"))
    dlg.rerank.setCurrentIndex(dlg.rerank.findData("dba+aqe,verify"))
    assert "/cbam0-gem3/" in dlg.current_model_id()
    assert dlg.values()["rerank"] == "dba+aqe,verify"
    assert dlg.rerank.findData("diffusion,verify") >= 0


def test_search_worker_re_ranks_as_settings_ask(tmp_path, model_config):
    photos = make_photos(tmp_path / "Photos", 6)
    lib = Library(tmp_path / "data", model_config, index_backend="exact")
    try:
        run(lib.index([str(tmp_path / "Photos")]))
        query = Query("q", path=str(photos[0]))
        vector = lib.embed(str(photos[0]))
        plain = search_hits(lib, SearchRequest(1, lib, query, 4), vector)
        for methods in ("aqe", "dba+aqe,verify", "diffusion"):
            req = SearchRequest(2, lib, query, 4, rerank=methods)
            hits = search_hits(lib, req, vector)
            assert len(hits) == 4 and hits[0].path == str(photos[0])
            assert {h.path for h in hits} <= {str(p) for p in photos}
        assert plain[0].path == str(photos[0])
    finally:
        lib.close()

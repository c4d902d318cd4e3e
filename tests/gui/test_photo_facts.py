"""Photo facts in the app: the details panel, the RAW+JPEG pair option in Settings, and the
search worker carrying metadata (the formats library: tests/core/test_formats.py)."""

from __future__ import annotations

import os

import pytest

from imgfinder.core.photometa import PhotoMeta
from imgfinder.core.types import Hit
from tests.core.test_formats import formats_lib  # noqa: F401 (the module-scoped fixture)


def test_details_panel_shows_photo_facts(qtbot, tmp_path):
    from imgfinder.gui.details_panel import DetailsPanel
    from imgfinder.gui.items import ResultItem
    from imgfinder.gui.thumbnails import DiskCache, ThumbnailLoader

    panel = DetailsPanel(ThumbnailLoader(cache=DiskCache(tmp_path / "thumbs")))
    qtbot.addWidget(panel)
    meta = PhotoMeta(
        taken="2024-05-01T14:03:22+02:00",
        make="NIKON CORPORATION",
        model="NIKON Z 6",
        lens="NIKKOR Z 50mm f/1.8 S",
        exposure_time=1 / 250,
        f_number=1.8,
        iso=200,
        focal_length=50.0,
        gps=True,
    )
    item = ResultItem(Hit(1, str(tmp_path / "a.nef"), 0.9), meta=meta, decode_source="raw-preview")
    panel.set_item(item)
    f = panel.fields
    assert f["Taken"].text() == "2024-05-01 14:03:22+02:00"
    assert f["Camera"].text() == "NIKON Z 6" and f["Lens"].text() == "NIKKOR Z 50mm f/1.8 S"
    assert f["Exposure"].text() == "1/250 s, f/1.8, ISO 200, 50 mm"
    assert f["GPS"].text() == "yes" and f["Decoded from"].text() == "RAW's embedded preview"
    panel.set_item(ResultItem(Hit(2, str(tmp_path / "b.png"), 0.5)))
    assert f["Taken"].text() == "unknown" and f["GPS"].text() == "unknown"


def test_settings_option_shows_raw_pairs_once(qtbot, tmp_path, weights_file):
    from imgfinder.gui.settings import GuiSettings
    from imgfinder.gui.settings_dialog import SettingsDialog
    from tests.gui.test_model_settings import effective

    settings = GuiSettings(raw_pairs_as_one=True)
    settings.save(tmp_path)
    loaded = GuiSettings.load(tmp_path)
    assert loaded.raw_pairs_as_one is True
    dlg = SettingsDialog(loaded, effective(weights_file), tmp_path)
    qtbot.addWidget(dlg)
    assert dlg.raw_pairs.isChecked()
    dlg.raw_pairs.setChecked(False)
    assert dlg.values()["raw_pairs_as_one"] is False


@pytest.mark.parametrize("as_one", [False, True])
def test_search_worker_carries_metadata_and_the_pair_option(formats_lib, qtbot, as_one):  # noqa: F811
    from imgfinder.gui.items import Query, SearchRequest
    from imgfinder.gui.workers import SearchWorker

    lib, root, _, _ = formats_lib
    worker = SearchWorker()
    worker.latest = 1
    got = []
    worker.done.connect(got.append)
    query = Query(label="shot1.dng", path=str(root / "shot1.dng"))
    worker.search(SearchRequest(1, lib, query, 3, False, raw_pairs_as_one=as_one))
    (result,) = got
    by_name = {os.path.basename(it.path): it for it in result.items}
    assert ("shot1.jpg" in by_name) is not as_one and "shot1.dng" in by_name
    assert by_name["shot1.dng"].decode_source == "raw-preview"
    assert by_name["shot1.dng"].meta.camera == "TestCam R1"

"""The app and another process on one library: the window notices the other's changes."""

from __future__ import annotations

from imgfinder.core.library import Library, run
from tests.imgutil import make_jpeg


def test_window_shows_a_folder_another_process_added(qtbot, make_window, tmp_path, _isolated):
    w = make_window()
    qtbot.waitUntil(lambda: w.size_label.text().startswith("0 photos"), timeout=10_000)
    folder = tmp_path / "added elsewhere"
    for i in range(2):
        make_jpeg(folder / f"x{i}.jpg", size=(90, 80), seed=300 + i)
    other = Library(w.lib.data_dir, w.lib.config, index_backend="exact")  # its own connection
    other._extractor = w.lib.extractor
    run(other.index([folder]))
    other.close()
    w._poll_changed_elsewhere()  # the 3 s timer's slot
    qtbot.waitUntil(lambda: w.size_label.text().startswith("2 photos"), timeout=10_000)
    assert [r.path for r in w.library_panel.roots] == [str(folder)]
    hits = w.lib.search(folder / "x1.jpg", k=1)
    assert hits[0].path == str(folder / "x1.jpg")

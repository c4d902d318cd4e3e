"""GUI building blocks: results model, thumbnails, settings, drops, URL fetches, watcher, hooks."""

from __future__ import annotations

import argparse
import io
import json
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QMimeData, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QImage, QPixmap  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from imgfinder.core.types import Hit  # noqa: E402
from imgfinder.gui.items import ResultItem  # noqa: E402
from imgfinder.gui.query import FetchError, fetch_url, from_mime, from_text  # noqa: E402
from imgfinder.gui.results_model import ResultsModel, ThumbStateRole  # noqa: E402
from imgfinder.gui.results_view import ResultsView  # noqa: E402
from imgfinder.gui.settings import SETTINGS_FILE, GuiSettings  # noqa: E402
from imgfinder.gui.thumbnails import DiskCache, ThumbnailLoader  # noqa: E402
from tests.gui_helpers import make_photos  # noqa: E402


def _items(paths: list[Path], n: int | None = None) -> list[ResultItem]:
    n = n or len(paths)
    out = []
    for i in range(n):
        p = paths[i % len(paths)]
        # distinct identities (no hash, distinct mtime) so every row has its own thumbnail key
        out.append(ResultItem(Hit(i + 1, str(p), 1.0 - i / (n + 1)), p.stat().st_size, i))
    return out


def test_results_model_passes_modeltester_and_thumbnails_arrive(qtbot, qtmodeltester, tmp_path):
    photos = make_photos(tmp_path / "p", 6)
    (tmp_path / "p" / "bad.png").write_bytes(b"not a png")
    loader = ThumbnailLoader(cache=DiskCache(tmp_path / "thumbs"))
    model = ResultsModel(loader)
    items = _items(photos) + [ResultItem(Hit(99, str(tmp_path / "p" / "bad.png"), 0.1), 9, 9)]
    model.set_items(items)
    qtmodeltester.check(model)
    changed = []
    model.dataChanged.connect(lambda a, b, roles: changed.append((a.row(), list(roles))))
    for row in range(model.rowCount()):
        pm = model.data(model.index(row), Qt.ItemDataRole.DecorationRole)
        assert isinstance(pm, QPixmap)  # a placeholder at first; data() never decodes
    qtbot.waitUntil(lambda: len({r for r, _ in changed}) == len(items), timeout=20_000)
    assert all(roles == [Qt.ItemDataRole.DecorationRole] for _, roles in changed)
    assert model.data(model.index(0), ThumbStateRole) == "ready"
    assert model.data(model.index(len(items) - 1), ThumbStateRole) == "broken"
    cached = list((tmp_path / "thumbs").rglob("*.jpg"))
    assert len(cached) == len(photos)  # on disk, by content key and size
    assert not list((tmp_path / "thumbs").rglob("*.tmp"))
    # a new loader (next session) reads them from disk
    loader2 = ThumbnailLoader(cache=DiskCache(tmp_path / "thumbs"))
    model2 = ResultsModel(loader2)
    model2.set_items(items[:1])
    model2.data(model2.index(0), Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: model2.data(model2.index(0), ThumbStateRole) == "ready")
    loader.shutdown()
    loader2.shutdown()


def test_ten_thousand_results_scroll_lazily(qtbot, tmp_path):
    photos = make_photos(tmp_path / "p", 8)
    loader = ThumbnailLoader(cache=DiskCache(tmp_path / "thumbs"), max_pending=64)
    model = ResultsModel(loader)
    view = ResultsView()
    view.setModel(model)
    view.resize(900, 600)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    t = time.perf_counter()
    model.set_items(_items(photos, 10_000))
    QApplication.processEvents()
    assert time.perf_counter() - t < 2.0
    bar = view.verticalScrollBar()
    worst = 0.0
    for step in range(40):
        t = time.perf_counter()
        bar.setValue(int(bar.maximum() * step / 39))
        view.viewport().repaint()
        QApplication.processEvents()
        worst = max(worst, time.perf_counter() - t)
        assert loader.pending_count() <= 64  # bounded; stale requests dropped
    assert worst < 0.5, f"a scroll step took {worst:.2f} s"
    qtbot.waitUntil(lambda: not loader.pending_count() and not loader._inflight, timeout=30_000)
    assert loader.decoded + loader.pending_count() + len(loader._inflight) < 2000
    assert loader.dropped > 0
    loader.shutdown()


def test_settings_roundtrip_and_damaged_files(tmp_path):
    s = GuiSettings(device="cpu", input_size=96, thumb_size=200, weights="/w.pth")
    path = s.save(tmp_path)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 2 and raw["input_size"] == 96
    assert GuiSettings.load(tmp_path) == s
    assert not [p for p in tmp_path.iterdir() if p.name != SETTINGS_FILE]  # no temp file left
    path.write_text("{not json")
    assert GuiSettings.load(tmp_path) == GuiSettings()
    path.write_text(json.dumps({"input_size": "big", "thumb_size": 9999, "device": "tpu"}))
    loaded = GuiSettings.load(tmp_path)
    assert loaded.input_size == 224 and loaded.thumb_size == 384 and loaded.device == "auto"


def test_min_score_is_off_by_default_and_version_1_default_is_migrated(tmp_path):
    """Centred scores go below 0: version 1's default 0.0 would hide half the results."""
    assert GuiSettings().min_score == -1.0
    path = tmp_path / SETTINGS_FILE
    path.write_text(json.dumps({"schema_version": 1, "min_score": 0.0, "thumb_size": 200}))
    assert GuiSettings.load(tmp_path).min_score == -1.0
    path.write_text(json.dumps({"schema_version": 1, "min_score": 0.3}))  # a user's choice
    assert GuiSettings.load(tmp_path).min_score == 0.3
    path.write_text(json.dumps({"schema_version": 2, "min_score": 0.0}))
    assert GuiSettings.load(tmp_path).min_score == 0.0


def test_launch_options_only_override_what_was_given(tmp_path):
    from imgfinder.cli import DEFAULTS
    from imgfinder.gui.app import options_from_args
    from imgfinder.gui.settings import Effective

    args = argparse.Namespace(**{**DEFAULTS, "input_size": 96})
    opts = options_from_args(args)
    assert opts.overrides == {"input_size"}
    eff = Effective.resolve(GuiSettings(input_size=128, device="cpu"), opts)
    assert eff.input_size == 96 and eff.device == "cpu" and eff.index_backend == "lsh"


def test_from_mime_prefers_files_then_image_data_then_urls(qtbot, tmp_path):
    photo = make_photos(tmp_path / "p", 1)[0]
    mime = QMimeData()
    mime.setUrls([QUrl("https://example.com/x.jpg"), QUrl.fromLocalFile(str(photo))])
    assert from_mime(mime).query.path == str(photo)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "p"))])
    assert from_mime(mime).folder == str(tmp_path / "p")
    mime = QMimeData()
    mime.setData("image/png", photo.read_bytes())
    assert from_mime(mime).query.data == photo.read_bytes()
    mime = QMimeData()
    mime.setImageData(QImage(str(photo)))
    assert not from_mime(mime).query.image.isNull()
    mime = QMimeData()
    mime.setUrls([QUrl("https://example.com/x.jpg")])
    assert from_mime(mime).url == "https://example.com/x.jpg"
    assert from_text(f"file://{photo}").query.path == str(photo)
    assert from_text("https://example.com/y.png\n").url == "https://example.com/y.png"
    assert from_text("hello") is None
    assert from_mime(QMimeData()) is None


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, length: int | None = None):
        super().__init__(data)
        self.headers = {"Content-Length": str(length if length is not None else len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fetch_url_caps_size_and_checks_content(monkeypatch, tmp_path):
    photo = make_photos(tmp_path / "p", 1)[0]
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda *a, **k: _FakeResponse(photo.read_bytes())
    )
    path = fetch_url("https://example.com/a.png")
    assert Path(path).read_bytes() == photo.read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"x", 10**10))
    with pytest.raises(FetchError, match="limit"):
        fetch_url("https://example.com/huge.jpg")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"x" * 5000, 0))
    with pytest.raises(FetchError, match="limit"):
        fetch_url("https://example.com/huge.jpg", max_bytes=1000)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"<html>"))
    with pytest.raises(FetchError, match="did not send an image"):
        fetch_url("https://example.com/page")
    with pytest.raises(FetchError, match="Offline mode"):
        fetch_url("https://example.com/a.png", offline=True)


def test_watcher_falls_back_to_rescans_beyond_the_budget(qtbot, tmp_path):
    from imgfinder.gui.watcher import FolderWatcher, list_dirs, watch_budget
    from imgfinder.gui.workers import TaskRunner

    small, big = tmp_path / "small", tmp_path / "big"
    (small / "a").mkdir(parents=True)
    for i in range(6):
        (big / f"d{i}" / "x").mkdir(parents=True)
    (big / ".hidden").mkdir()
    assert list_dirs(str(big), 5) is None
    assert len(list_dirs(str(big), 100)) == 13
    assert watch_budget() > 0
    tasks = TaskRunner()
    watcher = FolderWatcher(tasks, budget=5, debounce_ms=50)
    with qtbot.waitSignal(watcher.states_changed, timeout=5000):
        watcher.set_roots([(str(small), True), (str(big), True), (str(tmp_path / "gone"), False)])
    qtbot.waitUntil(lambda: "pending" not in {s.mode for s in watcher.states.values()})
    assert watcher.states[str(small)].mode == "watching"
    assert watcher.states[str(big)].mode == "polling"
    assert "rescanned every" in watcher.states[str(big)].describe(10)
    assert watcher.states[str(tmp_path / "gone")].mode == "missing"
    with qtbot.waitSignal(watcher.changed, timeout=5000):
        (small / "a" / "new.png").write_bytes(b"x")
    watcher.shutdown()
    tasks.shutdown()


def test_excepthook_shows_one_dialog_and_logs(qtbot, caplog):
    from imgfinder.gui.app import ErrorReporter

    reporter = ErrorReporter()
    for i in range(3):
        try:
            raise ValueError(f"boom {i}")
        except ValueError as exc:
            reporter.excepthook(type(exc), exc, exc.__traceback__)
    qtbot.waitUntil(lambda: reporter.box is not None and reporter.box.isVisible())
    qtbot.waitUntil(lambda: reporter.suppressed == 2)
    boxes = [
        w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()
    ]
    assert boxes == [reporter.box]
    assert "boom 0" in reporter.box.text()
    assert "boom 2" in reporter.box.detailedText() or "boom 0" in reporter.box.detailedText()
    assert sum("uncaught exception" in r.message for r in caplog.records) == 3
    reporter.box.close()


def test_app_icon_and_fallback(qtbot, monkeypatch):
    from imgfinder.gui import app

    if app.icon_path() is not None:
        assert not app.app_icon().isNull()
    monkeypatch.setattr(app, "icon_path", lambda: None)
    assert app.app_icon().isNull()


def test_qt_is_imported_only_by_the_gui_package():
    root = Path(__file__).resolve().parents[2] / "imgfinder"
    offenders = [
        p
        for p in root.rglob("*.py")
        if "gui" not in p.relative_to(root).parts and "PySide6" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_library_size_counts_photos_signed_but_not_indexed():
    from imgfinder.gui.library_view import size_text  # noqa: PLC0415

    assert size_text({"ok": 1, "failed": 2}) == "1 photo in the library"
    assert (
        size_text({"ok": 0, "signed": 50})
        == "0 photos in the library (+50 not indexed for search yet)"
    )

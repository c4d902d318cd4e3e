"""Helpers for the GUI tests: a window factory, photo folders, synthetic drops."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QSplitter, QWidget

from imgfinder.core.extract import Extractor
from imgfinder.core.library import Library
from tests.common import TEST_INPUT_SIZE
from tests.imgutil import make_image_set

PHOTO_SIZE = (96, 72)
MODEL_TIMEOUT_MS = 60_000
INDEX_TIMEOUT_MS = 120_000


def make_photos(folder: Path, n: int, *, seed: int = 0, prefix: str = "img") -> list[Path]:
    """Small distinct PNGs (lossless, so a query built from their pixels matches exactly)."""
    return make_image_set(folder, n, size=PHOTO_SIZE, ext=".png", prefix=prefix, seed=seed)


def send_drop(widget: QWidget, mime: QMimeData) -> bool:
    """A drag enter followed by a drop at the widget's centre, as the platform would send them."""
    pos = widget.rect().center()
    enter = QDragEnterEvent(
        QPointF(pos),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(
        QPointF(pos),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def share_extractor(monkeypatch, shared: Extractor) -> None:
    """Libraries configured like `shared` reuse it instead of loading ResNet50 again (~2 s each).

    Everything else stays real: the window still loads the model through `Library.extractor`
    in its search thread; only the weights are not read from disk once more.
    """
    original = Library.extractor

    def extractor(self):
        c, s = self.config, shared.config
        if (
            self._extractor is None
            and (c.weights, c.head, c.input_size, c.batch_size)
            == (s.weights, s.head, s.input_size, None)
            and c.device in ("cpu", "auto")
        ):
            self._extractor = shared
        return original.fget(self)

    monkeypatch.setattr(Library, "extractor", property(extractor))


def window_factory(qtbot, weights_file, monkeypatch=None, shared: Extractor | None = None):
    """Fixture body: build MainWindows on the isolated data dir with the seeded model."""
    from imgfinder.gui.main_window import MainWindow
    from imgfinder.gui.settings import LaunchOptions

    if monkeypatch is not None and shared is not None:
        share_extractor(monkeypatch, shared)
    made = []

    def make(*, wait_model: bool = True, weights: str | None = "seeded", **kw):
        opts = LaunchOptions(
            weights=str(weights_file) if weights == "seeded" else weights,
            device="cpu",
            input_size=TEST_INPUT_SIZE,
            index_backend="exact",
            offline=kw.pop("offline", False),
        )
        kw.setdefault("debounce_ms", 200)
        w = MainWindow(opts, **kw)
        qtbot.addWidget(w)
        made.append(w)
        if wait_model:
            with qtbot.waitSignal(w.search_ctl.model_ready, timeout=MODEL_TIMEOUT_MS):
                pass
        return w

    yield make
    for w in made:
        w.shutdown()


def split_ratio(split: QSplitter) -> float:
    """The first pane's share of a two-pane splitter (pixel sizes shift a little between runs)."""
    first, second = split.sizes()
    return first / (first + second)


def state_hex(widget) -> str:
    """A widget's saveState() as the settings file keeps it."""
    return bytes(widget.saveState().toHex()).decode()


def index_folder(qtbot, window, folder: Path):
    """Add a folder through the window and wait for its index run to finish."""
    with qtbot.waitSignal(window.index_ctl.finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        window.add_folder(str(folder))
    return blocker.args[0]


def wait_model(qtbot, window, action) -> None:
    """Run `action` (e.g. accepting settings that change the model) and wait for the window's
    (re)loaded model to be ready."""
    with qtbot.waitSignal(window.search_ctl.model_ready, timeout=MODEL_TIMEOUT_MS):
        action()


def wait_results(qtbot, window, action):
    """Run `action` and wait for the search it starts; returns the SearchResult."""
    with qtbot.waitSignal(window.search_ctl.results, timeout=MODEL_TIMEOUT_MS) as blocker:
        action()
    return blocker.args[0]

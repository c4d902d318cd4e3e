"""Screenshot of the real window under Xvfb with the xcb platform (skipped without Xvfb).

Run directly (`xvfb-run python tests/test_gui_screen.py OUT.png WEIGHTS`) it builds a small
library, searches, selects a result and saves a grab of the X screen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOT_COPY = Path("/tmp/imgfinder-screenshot.png")


@pytest.mark.screen
def test_screenshot_under_xvfb(tmp_path, weights_file):
    if not (shutil.which("xvfb-run") and shutil.which("Xvfb")):
        pytest.skip("xvfb-run/Xvfb not installed")
    out = tmp_path / "imgfinder-main-window.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_QPA", "IMGFINDER"))}
    env.update(QT_QPA_PLATFORM="xcb", IMGFINDER_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.run(
        [
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1400x860x24",
            sys.executable,
            str(Path(__file__).resolve()),
            str(out),
            str(weights_file),
            str(tmp_path / "photos"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.is_file()
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] >= 1000 and im.size[1] >= 600
        colours = im.convert("RGB").resize((64, 64)).getcolors(64 * 64)
        assert colours is None or len(colours) > 50  # a real UI, not a blank frame
    shutil.copy(out, SHOT_COPY)


def _main(out: str, weights: str, photo_dir: str) -> int:
    sys.path.insert(0, str(ROOT))
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtWidgets import QApplication

    from imgfinder.gui.app import app_icon
    from imgfinder.gui.main_window import MainWindow
    from imgfinder.gui.results_model import ThumbStateRole
    from imgfinder.gui.settings import LaunchOptions
    from tests.gui_helpers import send_drop
    from tests.imgutil import make_image_set

    app = QApplication(sys.argv[:1])
    assert app.platformName() == "xcb", app.platformName()
    photos = make_image_set(Path(photo_dir) / "Holiday 2024", 36, size=(240, 180), prefix="IMG")
    make_image_set(Path(photo_dir) / "Holiday 2024" / "more", 12, size=(240, 160), seed=77)
    opts = LaunchOptions(weights=weights, device="cpu", input_size=64, index_backend="exact")
    w = MainWindow(opts, icon=app_icon())
    w.resize(1400, 860)
    w.move(0, 0)
    w.show()

    def wait(cond, timeout=120.0) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError("screen test timed out")
            app.processEvents()
            time.sleep(0.01)

    wait(lambda: w.model_info is not None)
    done = []
    w.index_ctl.finished.connect(done.append)
    w.add_folder(str(Path(photo_dir) / "Holiday 2024"))
    wait(lambda: done)
    w.query_panel.count_spin.setValue(40)
    settle = time.monotonic() + 0.4  # the result count is debounced
    wait(lambda: time.monotonic() > settle)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photos[4]))])
    got = []
    w.search_ctl.results.connect(got.append)
    assert send_drop(w.query_panel.drop_zone, mime)
    wait(lambda: got)
    wait(lambda: w.search_ctl.current.preview is not None)
    w.results_view.setCurrentIndex(w.results_model.index(1))
    view, model = w.results_view, w.results_model

    def visible_ready() -> bool:
        rows = [
            r
            for r in range(model.rowCount())
            if view.visualRect(model.index(r)).intersects(view.viewport().rect())
        ]
        return all(model.index(r).data(ThumbStateRole) != "loading" for r in rows)

    wait(visible_ready)
    wait(lambda: w.details.preview.pixmap() is not None and not w.details.preview.pixmap().isNull())
    # the explanation views: the query's attention map and the selected result's match maps
    wait(lambda: w.query_explain.current is not None and w.match_view.current is not None)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    shot = app.primaryScreen().grabWindow(0)
    shot.save(out)
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:4]))

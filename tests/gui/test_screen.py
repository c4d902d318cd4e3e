"""Screenshots of every main view from the real app under Xvfb (skipped without Xvfb).

They come from packaging/screenshots.py, the script that takes the README's pictures, so the
pictures and this test see the same app: search with results, query attention, why it
matches, duplicates, settings, train.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOT_COPY = Path("/tmp/imgfinder-screenshot.png")
VIEWS = ("search", "attention", "match", "duplicates", "settings", "train")


@pytest.mark.screen
def test_screenshot_of_each_view_under_xvfb(tmp_path, weights_file):
    if not (shutil.which("xvfb-run") and shutil.which("Xvfb")):
        pytest.skip("xvfb-run/Xvfb not installed")
    out = tmp_path / "shots"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_QPA", "IMGFINDER"))}
    env.update(QT_QPA_PLATFORM="xcb")
    proc = subprocess.run(
        [
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1400x900x24",
            sys.executable,
            str(ROOT / "packaging" / "screenshots.py"),
            str(out),
            "--weights",
            str(weights_file),
            "--input-size",
            "64",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from PIL import Image

    for view in VIEWS:
        path = out / f"{view}.png"
        assert path.is_file(), f"no screenshot of {view}"
        with Image.open(path) as im:
            big = view not in ("settings", "train")  # the dialogs are smaller
            assert im.size[0] >= (1200 if big else 400) and im.size[1] >= (700 if big else 200)
            colours = im.convert("RGB").resize((64, 64)).getcolors(64 * 64)
            assert colours is None or len(colours) > (40 if big else 8), f"{view} looks blank"
    shutil.copy(out / "search.png", SHOT_COPY)

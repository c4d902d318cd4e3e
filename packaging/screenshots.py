"""Screenshots of the app's main views for the README's user guide, taken from the real app.

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python packaging/screenshots.py docs/screenshots

It builds a small library of generated photos (scenes with shapes, some copied, resized,
rotated or re-saved, so the duplicates view has groups) in a temporary data directory, opens
the window at 1280x800 on the X server (QT_QPA_PLATFORM=xcb), and saves one PNG per view:
search.png, attention.png, match.png, duplicates.png, settings.png, train.png.

Model: `--weights FILE` / IMGFINDER_WEIGHTS (a ResNet50 state dict) if given; else
EfficientNet-Lite0 with the ImageNet weights of its installed package, so scores and heatmaps
are a trained network's; else (package missing) a seeded random-init ResNet50, whose
heatmaps show only the layout. The script prints which one it used. `--photos DIR` uses your
own photos instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("search", "attention", "match", "duplicates", "settings", "train")
WINDOW = (1280, 800)


def make_photos(folder: Path, n: int = 40) -> None:
    """Generated 'photos', plus copies of a few in other sizes, formats and orientations."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    def scene(seed: int, size=(480, 320)) -> Image.Image:
        rng = np.random.default_rng(seed)
        w, h = size
        top, bottom = rng.integers(40, 230, 3), rng.integers(10, 160, 3)
        t = np.linspace(0, 1, h)[:, None, None]
        sky = (top * (1 - t) + bottom * t) * np.ones((1, w, 1))
        img = Image.fromarray(sky.astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(10):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(h // 4, h))
            x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (d.ellipse if rng.integers(2) else d.rectangle)((x0, y0, x1, y1), fill=colour)
        return img.filter(ImageFilter.GaussianBlur(1.2))

    trips = ["Coast 2023", "Garden", "City walk"]
    for i in range(n):
        sub = folder / trips[i % len(trips)]
        sub.mkdir(parents=True, exist_ok=True)
        scene(1000 + i).save(sub / f"IMG_{2100 + i}.jpg", quality=90)
    backup = folder / "Backup"
    backup.mkdir(parents=True, exist_ok=True)
    for i in (0, 3, 7):  # exact copies, a half-size version, a rotated PNG (and a framed one)
        src = folder / trips[i % 3] / f"IMG_{2100 + i}.jpg"
        shutil.copy2(src, backup / src.name)
        with Image.open(src) as im:
            im.resize((im.width // 2, im.height // 2)).save(
                backup / f"small_{src.name}", quality=85
            )
            im.transpose(Image.Transpose.ROTATE_90).save(backup / f"{src.stem}_rotated.png")
            if i == 0:  # on a white mat: the keeper rule keeps the original, "no frame"
                mat = Image.new("RGB", (im.width + 60, im.height + 60), "white")
                mat.paste(im, (30, 30))
                mat.save(backup / f"framed_{src.name}", quality=92)


def pick_model(tmp: Path, given: str | None) -> tuple[str | None, str | None, str]:
    """(backbone, weights file, description) for the app; see the module docstring."""
    given = given or os.environ.get("IMGFINDER_WEIGHTS")
    if given:
        return None, given, f"local weights {given}"
    from imgfinder.core import weights

    if weights.default_available("efficientnet-lite0"):
        return "efficientnet-lite0", None, "EfficientNet-Lite0, ImageNet weights (its package)"
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    path = tmp / "resnet50-seed0.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    return None, str(path), "seeded random-init ResNet50 (no pretrained weights installed)"


def save_small(pixmap, path: Path) -> None:
    """PNG with a 256-colour palette: a few hundred KB instead of a few MB."""
    from PIL import Image

    raw = path.with_suffix(".raw.png")
    pixmap.save(str(raw), "PNG")
    with Image.open(raw) as im:
        im.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    raw.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for the PNGs (e.g. docs/screenshots)")
    ap.add_argument("--photos", type=Path, help="your own photo folder instead of generated ones")
    ap.add_argument("--only", nargs="*", choices=VIEWS, help="take only these views")
    ap.add_argument("--input-size", type=int, default=224, help="model input size (tests: 64)")
    ap.add_argument(
        "--weights", help="ResNet50 weights file (default: IMGFINDER_WEIGHTS, else Lite0)"
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="imgfinder-shots-"))
    os.environ["IMGFINDER_DATA_DIR"] = str(tmp / "data")
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    sys.path.insert(0, str(ROOT))
    try:
        return _take(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _take(args, tmp: Path) -> int:
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication

    from imgfinder.gui.app import app_icon, apply_system_palette
    from imgfinder.gui.items import Query
    from imgfinder.gui.main_window import MainWindow
    from imgfinder.gui.results_model import ThumbStateRole
    from imgfinder.gui.settings import LaunchOptions

    photos = args.photos
    if photos is None:
        photos = tmp / "Pictures"
        make_photos(photos)
    backbone, wfile, wdesc = pick_model(tmp, args.weights)
    print(f"model: {wdesc}; photos: {'generated' if args.photos is None else photos}")
    app = QApplication([sys.argv[0]])
    apply_system_palette(app)
    opts = LaunchOptions(
        backbone=backbone,
        weights=wfile,
        device="cpu",
        input_size=args.input_size,
        index_backend="exact",
    )
    w = MainWindow(opts, icon=app_icon())
    w.resize(*WINDOW)
    w.move(0, 0)
    w.show()
    wanted = set(args.only or VIEWS)

    def wait(cond, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError("screenshots: timed out waiting for the app")
            app.processEvents()
            time.sleep(0.01)

    def settle(seconds: float = 0.5) -> None:
        end = time.monotonic() + seconds
        wait(lambda: time.monotonic() > end)

    def shot(name: str, widget) -> None:
        if name in wanted:
            settle()
            save_small(widget.grab(), args.out / f"{name}.png")
            print(f"saved {args.out / (name + '.png')}")

    wait(lambda: w.model_info is not None)
    done = []
    w.index_ctl.finished.connect(done.append)
    w.add_folder(str(photos))
    wait(lambda: done)
    files = sorted(p for p in photos.rglob("*.jpg"))
    got = []
    w.search_ctl.results.connect(got.append)
    w.search.search_query(Query(label=files[1].name, path=str(files[1])))
    wait(lambda: got)
    view, model = w.results_view, w.results_model

    def thumbs_ready() -> bool:
        vp = view.viewport().rect()
        rows = [
            r for r in range(model.rowCount()) if view.visualRect(model.index(r)).intersects(vp)
        ]
        return all(model.index(r).data(ThumbStateRole) != "loading" for r in rows)

    wait(thumbs_ready)
    w.results_view.setCurrentIndex(model.index(min(3, model.rowCount() - 1)))  # another photo
    wait(lambda: w.query_explain.current is not None)
    shot("search", w)
    w.explain_pane.set_folded(False, height=380)
    w.explain_pane.setCurrentWidget(w.query_explain)
    shot("attention", w)
    wait(lambda: w.match_view.current is not None)
    w.explain_pane.setCurrentWidget(w.match_view)
    shot("match", w)
    w.explain_pane.set_folded(True)
    w.views.setCurrentWidget(w.dupes_view)
    scanned = []
    w.dupes_view.scan_finished.connect(scanned.append)
    w.find_duplicates()
    wait(lambda: scanned)
    wait(lambda: w.dupes_view.suggested is not None)
    wait(
        lambda: all(
            c.thumb.pixmap() is not None and not c.thumb.pixmap().isNull()
            for c in w.dupes_view._cards
        )
    )
    shot("duplicates", w)
    w.views.setCurrentIndex(0)
    w.open_settings()
    dlg = w.settings_dialog
    wait(lambda: dlg.isVisible())
    dlg.move(w.mapToGlobal(QPoint(200, 60)))
    shot("settings", dlg)
    dlg.reject()
    train = w.open_train_dialog()
    wait(lambda: train.isVisible())
    shot("train", train)
    train.close()
    w.close()
    wait(lambda: not w.isVisible(), timeout=60)
    w.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

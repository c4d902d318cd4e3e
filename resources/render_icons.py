"""Regenerate the raster app icons from resources/icons/imgfinder.svg.

Usage: python resources/render_icons.py

Writes resources/icons/hicolor/<N>x<N>/apps/imgfinder.png for every size in SIZES, plus
resources/icons/imgfinder.ico (Windows) and resources/icons/imgfinder.icns (macOS).
Sizes up to SMALL_MAX are drawn from imgfinder-small.svg, a simplified variant with bolder
shapes that stays legible at 16-24 px; larger sizes come from imgfinder.svg.
Renders with PySide6's QtSvg (headless, QT_QPA_PLATFORM=offscreen); falls back to
`rsvg-convert` (Debian package librsvg2-bin) when QtSvg is unavailable.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

ICONS = Path(__file__).resolve().parent / "icons"
SVG = ICONS / "imgfinder.svg"
SMALL_SVG = ICONS / "imgfinder-small.svg"
SMALL_MAX = 24
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def png_path(size: int) -> Path:
    return ICONS / "hicolor" / f"{size}x{size}" / "apps" / "imgfinder.png"


def source_for(size: int) -> Path:
    return SMALL_SVG if size <= SMALL_MAX else SVG


def _render_qt(svg: Path, size: int) -> Image.Image:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    # No QGuiApplication needed (the SVGs have no text); not creating one keeps this usable
    # inside a test session whose QApplication is made later by pytest-qt.
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise RuntimeError(f"QtSvg cannot parse {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    return Image.open(io.BytesIO(bytes(buf.data()))).convert("RGBA")


def _render_rsvg(svg: Path, size: int) -> Image.Image:
    exe = shutil.which("rsvg-convert")
    if exe is None:
        raise RuntimeError("neither PySide6.QtSvg nor rsvg-convert (librsvg2-bin) is available")
    out = subprocess.run(
        [exe, "-w", str(size), "-h", str(size), "-f", "png", str(svg)],
        check=True,
        capture_output=True,
    ).stdout
    return Image.open(io.BytesIO(out)).convert("RGBA")


def render(size: int) -> Image.Image:
    svg = source_for(size)
    try:
        import PySide6.QtSvg  # noqa: F401
    except ImportError:
        return _render_rsvg(svg, size)
    return _render_qt(svg, size)


def main() -> int:
    images = {size: render(size) for size in sorted(set(SIZES + ICO_SIZES + ICNS_SIZES))}
    for size in SIZES:
        path = png_path(size)
        path.parent.mkdir(parents=True, exist_ok=True)
        images[size].save(path, optimize=True)
        print(f"wrote {path.relative_to(ICONS.parent)}")

    ico = [images[s] for s in ICO_SIZES]
    ico[-1].save(
        ICONS / "imgfinder.ico",
        format="ICO",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=ico[:-1],
    )
    print("wrote icons/imgfinder.ico")

    icns = [images[s] for s in ICNS_SIZES]
    icns[-1].save(ICONS / "imgfinder.icns", format="ICNS", append_images=icns[:-1])
    print("wrote icons/imgfinder.icns")
    return 0


if __name__ == "__main__":
    sys.exit(main())

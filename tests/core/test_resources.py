"""Application resources: icons, freedesktop entry and AppStream metainfo.

The external validators (desktop-file-validate from desktop-file-utils, appstreamcli from
appstream) run when installed and are skipped otherwise; the structural checks always run.
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

import imgfinder

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "resources"
ICONS = RESOURCES / "icons"
APP_ID = "io.github.imgfinder.ImgFinder"
DESKTOP = RESOURCES / "imgfinder.desktop"
METAINFO = RESOURCES / f"{APP_ID}.metainfo.xml"
SVGS = [ICONS / "imgfinder.svg", ICONS / "imgfinder-small.svg"]
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
MIME_TYPES = {"image/jpeg", "image/png", "image/webp", "image/tiff", "image/bmp", "image/gif"}
SVG_NS = "{http://www.w3.org/2000/svg}"


def png_path(size: int) -> Path:
    return ICONS / "hicolor" / f"{size}x{size}" / "apps" / "imgfinder.png"


def load_render_script():
    spec = importlib.util.spec_from_file_location("render_icons", RESOURCES / "render_icons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_desktop() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # desktop-entry keys are case-sensitive
    parser.read(DESKTOP, encoding="utf-8")
    return parser


# --- icons ------------------------------------------------------------------------------------


@pytest.mark.parametrize("svg", SVGS, ids=lambda p: p.name)
def test_svg_parses_with_square_viewbox(svg):
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG_NS}svg"
    view_box = root.get("viewBox")
    assert view_box, f"{svg.name} has no viewBox"
    x, y, w, h = (float(v) for v in view_box.replace(",", " ").split())
    assert (x, y) == (0, 0) and w == h > 0
    # Renderers differ in what they support beyond SVG Tiny: keep the art to plain shapes.
    unsupported = {"filter", "mask", "clipPath", "foreignObject", "image", "text", "style"}
    used = {el.tag.removeprefix(SVG_NS) for el in root.iter()}
    assert not used & unsupported, f"{svg.name} uses {sorted(used & unsupported)}"


@pytest.mark.parametrize("size", PNG_SIZES)
def test_png_exists_with_right_size(size):
    path = png_path(size)
    assert path.is_file(), f"missing {path.relative_to(ROOT)}: run resources/render_icons.py"
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (size, size)
        assert im.mode == "RGBA"
        assert im.getchannel("A").getextrema()[1] == 255, "icon is fully transparent"


def test_render_script_covers_the_same_sizes():
    script = load_render_script()
    assert tuple(script.SIZES) == PNG_SIZES
    assert script.png_path(48) == png_path(48)


def test_pngs_match_the_svg_sources():
    """The committed PNGs are what resources/render_icons.py makes from the current SVGs."""
    script = load_render_script()
    try:
        import PySide6.QtSvg  # noqa: F401
    except ImportError:
        if shutil.which("rsvg-convert") is None:
            pytest.skip("neither PySide6.QtSvg nor rsvg-convert available to render SVG")
    for size in (16, 48, 128):
        rendered = script.render(size)
        with Image.open(png_path(size)) as stored:
            diff = ImageChops.difference(rendered, stored.convert("RGBA"))
        mean = sum(ImageStat.Stat(diff).mean) / 4
        # different renderers anti-alias slightly differently; stale art differs a lot
        assert mean < 4, f"{size}px PNG is stale: run resources/render_icons.py"


def test_windows_ico_and_macos_icns():
    with Image.open(ICONS / "imgfinder.ico") as ico:
        assert ico.format == "ICO"
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(ICONS / "imgfinder.icns") as icns:
        assert icns.format == "ICNS"
        assert icns.size[0] >= 512


# --- desktop entry ----------------------------------------------------------------------------


def test_desktop_entry_keys():
    entry = read_desktop()["Desktop Entry"]
    for key in (
        "Type",
        "Name",
        "GenericName",
        "Comment",
        "Exec",
        "TryExec",
        "Icon",
        "Terminal",
        "Categories",
        "MimeType",
        "Keywords",
        "StartupWMClass",
    ):
        assert entry.get(key), f"desktop entry lacks {key}"
    assert entry["Type"] == "Application"
    assert entry["GenericName"] == "Photo Similarity Browser"
    assert entry["Exec"] == "imgfinder gui %U"
    assert entry["Icon"] == "imgfinder"
    assert entry["Terminal"] == "false"
    assert entry["Categories"].split(";")[:3] == ["Graphics", "Photography", "Viewer"]
    assert entry["Categories"].endswith(";") and entry["MimeType"].endswith(";")
    assert set(entry["MimeType"].rstrip(";").split(";")) == MIME_TYPES
    assert "similar" in entry["Keywords"].split(";")


def test_desktop_file_validate():
    exe = shutil.which("desktop-file-validate")
    if exe is None:
        pytest.skip("desktop-file-validate not installed (Debian/Ubuntu: desktop-file-utils)")
    proc = subprocess.run([exe, str(DESKTOP)], capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "error" not in output and "warning" not in output, output


# --- AppStream metainfo -----------------------------------------------------------------------


def test_metainfo_content():
    root = ET.parse(METAINFO).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert METAINFO.name == f"{APP_ID}.metainfo.xml"
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert root.findtext("project_license") == "MIT"
    launchable = root.find("launchable")
    assert launchable.get("type") == "desktop-id" and launchable.text == f"{APP_ID}.desktop"
    assert root.findtext("provides/binary") == "imgfinder"
    assert root.find("url[@type='homepage']").text.startswith("https://")
    assert root.find("content_rating").get("type") == "oars-1.1"
    releases = root.findall("releases/release")
    assert releases[0].get("version") == imgfinder.__version__
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", releases[0].get("date"))
    features = " ".join(li.text for li in root.findall("description/ul/li")).lower()
    for word in ("drag-and-drop", "duplicate", "heat map", "gpu"):
        assert word in features
    assert "never modifies" in " ".join(p.text for p in root.findall("description/p"))


def test_metainfo_matches_desktop_entry():
    entry = read_desktop()["Desktop Entry"]
    root = ET.parse(METAINFO).getroot()
    assert root.findtext("name") == entry["Name"]
    assert root.findtext("summary") == entry["Comment"]
    categories = [c.text for c in root.findall("categories/category")]
    assert categories == entry["Categories"].rstrip(";").split(";")


def test_appstreamcli_validate():
    exe = shutil.which("appstreamcli")
    if exe is None:
        pytest.skip("appstreamcli not installed (Debian/Ubuntu: appstream)")
    proc = subprocess.run(
        [exe, "validate", "--no-net", "--pedantic", "--no-color", str(METAINFO)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # Errors and warnings fail; info (I:) and pedantic (P:) hints are allowed. The one
    # expected pedantic hint is cid-contains-uppercase-letter (the id is ...ImgFinder).
    problems = [line for line in output.splitlines() if re.match(r"\s*[EW]:", line)]
    assert not problems, output

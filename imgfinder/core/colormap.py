"""Heatmap rendering: perceptual colour LUTs, smooth upsampling, photo overlays, side-by-side export."""

from __future__ import annotations

import functools
import logging

import numpy as np
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

# Colour anchors at evenly spaced positions (0, 1/9, ..., 1) of matplotlib's perceptually uniform
# maps (values published as CC0 data by van der Walt & Smith) and Moreland's diverging cool-warm.
# Ten anchors interpolated in sRGB stay within a few levels of the full 256-entry tables and keep
# lightness monotonic, which is what a reader of a heatmap relies on.
_ANCHORS: dict[str, tuple[str, ...]] = {
    "inferno": ("000004 1b0c42 4b0c6b 781c6d a52c60 cf4446 ed6925 fb9a06 f7d03c fcffa4".split()),
    "viridis": ("440154 482878 3e4a89 31688e 26828e 1f9e89 35b779 6dcd59 b4de2c fde725".split()),
    "coolwarm": ("3b4cc0 8db0fe dddddd f49a7b b40426".split()),
}
SEQUENTIAL = ("inferno", "viridis")
DIVERGING = "coolwarm"  # used for maps with negative values: blue < 0 < red, grey at zero
CMAPS = (*SEQUENTIAL, DIVERGING)


@functools.cache
def lut(name: str = "inferno") -> np.ndarray:
    """The (256, 3) uint8 table of a colormap, interpolated from its anchors (read-only)."""
    try:
        anchors = _ANCHORS[name]
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(CMAPS)}") from None
    rgb = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in anchors], np.float64)
    pos = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(t, pos, rgb[:, k]) for k in range(3)], axis=1)
    out = np.clip(np.rint(table), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def is_signed(hmap: np.ndarray, rel_tol: float = 1e-6) -> bool:
    """True when the map has negative values that matter (not just float noise around zero)."""
    hmap = np.asarray(hmap)
    if hmap.size == 0:
        return False
    peak = float(np.abs(hmap).max())
    return peak > 0 and float(hmap.min()) < -rel_tol * peak


def upsample(hmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Smoothly stretch an (h, w) map to `size` = (W, H), cell centres on pixel-region centres.

    The model saw the whole photo squashed to a square, so cell (i, j) covers the same fraction
    of the photo in both directions: a plain resize to the photo's own size puts it back, at the
    photo's aspect. Bicubic can ring past the data's range; the result is clipped to it.
    """
    hmap = np.asarray(hmap, dtype=np.float32)
    if hmap.ndim != 2:
        raise ValueError(f"expected an (h, w) map, got shape {hmap.shape}")
    width, height = int(size[0]), int(size[1])
    if (hmap.shape[1], hmap.shape[0]) == (width, height):
        return hmap.copy()
    big = Image.fromarray(np.ascontiguousarray(hmap), mode="F").resize(
        (width, height), Image.Resampling.BICUBIC
    )
    out = np.asarray(big, dtype=np.float32)
    return np.clip(out, float(hmap.min()), float(hmap.max()))


def peak(*maps: np.ndarray) -> float:
    """Common scale for maps shown together (a pair's two maps share one, so they compare)."""
    values = [float(np.abs(m).max()) for m in maps if np.asarray(m).size]
    return max(values, default=0.0)


def colorize(
    hmap: np.ndarray, cmap: str = "inferno", vmax: float | None = None, signed: bool | None = None
) -> np.ndarray:
    """Map values to RGB: [0, vmax] on a sequential map, or [-vmax, vmax] on the diverging one.

    `signed=None` decides from the data; a signed map always uses the diverging table, because a
    sequential one would hide which regions argue against the match.
    """
    hmap = np.asarray(hmap, dtype=np.float32)
    if signed is None:
        signed = is_signed(hmap)
    scale = peak(hmap) if vmax is None else float(vmax)
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    if signed:
        t = (np.clip(hmap / scale, -1.0, 1.0) + 1.0) * 0.5
        table = lut(DIVERGING)
    else:
        t = np.clip(hmap / scale, 0.0, 1.0)
        table = lut(cmap)
    idx = np.rint(np.nan_to_num(t, nan=0.0) * 255).astype(np.uint8)
    return table[idx]


def heat_image(
    hmap: np.ndarray,
    size: tuple[int, int],
    cmap: str = "inferno",
    vmax: float | None = None,
    signed: bool | None = None,
) -> Image.Image:
    """The coloured heat layer at `size` (W, H), ready to blend over the photo."""
    if signed is None:
        signed = is_signed(hmap)
    if vmax is None:
        vmax = peak(hmap)
    return Image.fromarray(colorize(upsample(hmap, size), cmap, vmax, signed), "RGB")


def overlay(
    photo: Image.Image,
    hmap: np.ndarray,
    opacity: float = 0.5,
    cmap: str = "inferno",
    *,
    vmax: float | None = None,
    signed: bool | None = None,
) -> Image.Image:
    """Blend the heatmap over the (upright) photo at the photo's own size and aspect."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within 0..1, got {opacity}")
    photo = photo.convert("RGB")
    heat = heat_image(hmap, photo.size, cmap, vmax, signed)
    return Image.blend(photo, heat, float(opacity))


def colorbar(width: int, height: int, cmap: str = "inferno", signed: bool = False) -> Image.Image:
    """A horizontal legend strip, low values on the left."""
    table = lut(DIVERGING if signed else cmap)
    idx = np.rint(np.linspace(0, 255, max(1, width))).astype(np.uint8)
    strip = np.broadcast_to(table[idx][None, :, :], (max(1, height), max(1, width), 3))
    return Image.fromarray(np.ascontiguousarray(strip), "RGB")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError, ValueError):  # pragma: no cover - old or FreeType-less Pillow
        return ImageFont.load_default()


GAP = 8  # pixels between and around the two panels


def side_by_side(
    query_overlay: Image.Image,
    result_overlay: Image.Image,
    caption: str,
    *,
    cmap: str | None = "inferno",
    signed: bool = False,
    background: tuple[int, int, int] = (24, 24, 24),
) -> Image.Image:
    """Query and result next to each other (vertically centred) above a caption band.

    The canvas is `w1 + GAP + w2` wide and `max(h1, h2)` plus the band high; the band holds the
    caption lines and, with `cmap`, a low-to-high colour legend (beside the text when it fits,
    else below it).
    """
    q, r = query_overlay.convert("RGB"), result_overlay.convert("RGB")
    top = max(q.height, r.height)
    width = q.width + GAP + r.width
    lines = caption.splitlines() or [""]
    font_size = int(np.clip(round(width / 70), 11, 22))
    font = _font(font_size)
    line_h = font_size + 6
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(measure.textlength(line, font=font) for line in lines)
    legend_w = min(160, width - 2 * GAP) if cmap else 0
    bar_h = max(6, font_size // 2)
    legend_h = bar_h + 2 + line_h if legend_w >= 40 else 0
    beside = legend_h and text_w + 3 * GAP + legend_w <= width
    text_h = len(lines) * line_h
    band = 2 * GAP + (max(text_h, legend_h) if beside else text_h + (legend_h and GAP + legend_h))
    canvas = Image.new("RGB", (width, top + band), background)
    canvas.paste(q, (0, (top - q.height) // 2))
    canvas.paste(r, (q.width + GAP, (top - r.height) // 2))
    draw = ImageDraw.Draw(canvas)
    y = top + GAP
    for line in lines:
        draw.text((GAP, y), line, fill=(235, 235, 235), font=font)
        y += line_h
    if legend_h:
        x, by = (width - GAP - legend_w, top + GAP + 2) if beside else (GAP, y + GAP)
        canvas.paste(colorbar(legend_w, bar_h, cmap or "inferno", signed), (x, by))
        label_y = by + bar_h + 2
        low, high = ("-", "+") if signed else ("low", "high")
        draw.text((x, label_y), low, fill=(200, 200, 200), font=font)
        hi_w = draw.textlength(high, font=font)
        draw.text((x + legend_w - hi_w, label_y), high, fill=(200, 200, 200), font=font)
    return canvas

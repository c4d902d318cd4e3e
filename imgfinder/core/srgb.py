"""Colour to sRGB: any Pillow mode (palette, 16-bit, float, CMYK, LAB, with alpha) becomes an
sRGB RGB image, honouring an embedded ICC profile and putting transparency on white."""

from __future__ import annotations

import functools
import io
import logging

import numpy as np
from PIL import Image, ImageCms

log = logging.getLogger(__name__)

_WHITE = (255, 255, 255)
# Modes whose samples are numbers rather than 8-bit intensities; they are rescaled by their range.
_NUMERIC_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;32", "I;32B", "I;32S"}
# ICC colour-space signature each (normalised) mode needs in its profile.
_ICC_SPACE_FOR_MODE = {"RGB": "RGB", "L": "GRAY", "CMYK": "CMYK", "LAB": "LAB"}


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.lru_cache(maxsize=1)
def _lab_transform() -> ImageCms.ImageCmsTransform:
    """Pillow cannot convert LAB to RGB by itself; lcms can (D50 Lab, as TIFF CIELab is)."""
    return ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), _srgb_profile(), "LAB", "RGB", flags=ImageCms.Flags.NOCACHE
    )


@functools.lru_cache(maxsize=32)
def _icc_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """Build (once per distinct profile) a transform to sRGB, or None if it is sRGB or unusable.

    Cached because building costs milliseconds and a library usually holds a handful of profiles.
    NOCACHE makes lcms keep no per-transform pixel cache, so one transform is safe to share
    between threads.
    """
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except Exception as exc:  # noqa: BLE001 - corrupt profiles must not lose the photo
        log.debug("ignoring unreadable ICC profile: %s", exc)
        return None
    space = (profile.profile.xcolor_space or "").strip().upper()
    if space != _ICC_SPACE_FOR_MODE.get(mode):
        log.debug("ignoring ICC profile for %r on a %s image", space, mode)
        return None
    description = (profile.profile.profile_description or "").strip()
    if mode == "RGB" and description.lower().startswith("srgb"):
        return None  # already sRGB: the transform would be an expensive no-op
    try:
        return ImageCms.buildTransform(
            profile,
            _srgb_profile(),
            mode,
            "RGB",
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            flags=ImageCms.Flags.NOCACHE,
        )
    except Exception as exc:  # noqa: BLE001
        log.debug("ignoring ICC profile %r: %s", description, exc)
        return None


def _numeric_to_l(im: Image.Image) -> Image.Image:
    """Scale a 16/32-bit or float single-channel image to 8 bits by its actual value range.

    Scientific and scanner TIFFs rarely use the full range, so a fixed shift would leave them
    black; NaN/inf pixels are ignored for the range and rendered black.
    """
    arr = np.asarray(im)
    if arr.ndim != 2:
        raise ValueError(f"unsupported image mode {im.mode}")
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return Image.new("L", im.size, 0)
    lo = float(arr[finite].min())
    hi = float(arr[finite].max())
    if hi > lo:
        out = (arr - lo) * (255.0 / (hi - lo))
    else:
        out = np.full(arr.shape, min(max(lo, 0.0), 255.0))
    out[~finite] = 0.0
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def _split_alpha(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Normalise to RGB/L/CMYK/LAB (+ a separate alpha) so colour management sees plain colour."""
    mode = im.mode
    has_transparency = im.info.get("transparency") is not None
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if (mode == "PA" or has_transparency) else "RGB")
    elif mode in ("L", "RGB") and has_transparency:
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("RGBa", "La"):
        im = im.convert(mode.upper())
    elif mode in ("RGBX", "YCbCr", "HSV"):
        im = im.convert("RGB")
    elif mode in _NUMERIC_MODES:
        im = _numeric_to_l(im)
    if im.mode in ("RGBA", "LA"):
        return im.convert(im.mode[:-1]), im.getchannel("A")
    return im, None


def to_rgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert any mode to sRGB RGB: embedded profile honoured, transparency on white."""
    base, alpha = _split_alpha(im)
    rgb: Image.Image | None = None
    if icc:
        transform = _icc_transform(bytes(icc), base.mode)
        if transform is not None:
            rgb = transform.apply(base)
    if rgb is None:
        if base.mode == "LAB":
            rgb = _lab_transform().apply(base)
        else:
            rgb = base.convert("RGB")  # raises ValueError for modes Pillow cannot convert
    if alpha is not None:
        background = Image.new("RGB", rgb.size, _WHITE)
        background.paste(rgb, mask=alpha)
        rgb = background
    return rgb

"""Robust photo decoding: any file Pillow can read becomes a loaded, upright, sRGB RGB image."""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import logging
import os
import re
from typing import Any

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from imgfinder.errors import DecodeError

log = logging.getLogger(__name__)

# Optional HEIC/HEIF support: registering the opener once at import time (never per call) keeps
# decoding thread-safe while letting iPhone photos through when pillow-heif happens to be installed.
try:  # pragma: no cover - depends on an optional package
    import pillow_heif  # type: ignore[import-not-found]

    pillow_heif.register_heif_opener()
except Exception:  # noqa: BLE001 - any failure just means "no HEIF"
    pass

# Load every plugin now, in the importing thread: Image.open would otherwise initialise the plugin
# registry lazily on its first failure, which could race between worker threads.
Image.init()

Source = str | os.PathLike | bytes | bytearray | memoryview | Image.Image

# Extensions photographers actually have, limited to what this Pillow build can open (so a HEIC
# appears only with pillow-heif, AVIF only when Pillow was built with libavif).
_CANDIDATE_EXTENSIONS = (
    ".jpg .jpeg .jpe .jfif .mpo .png .apng .webp .tif .tiff .bmp .dib .gif "
    ".jp2 .j2k .jpf .jpx .avif .heic .heif .psd .tga .ppm .pgm .pbm .pnm .qoi"
).split()
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    ext for ext in _CANDIDATE_EXTENSIONS if ext in Image.registered_extensions()
)

_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the image upright (same table as ImageOps).
_ORIENT_OPS: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_WHITE = (255, 255, 255)
# Modes whose samples are numbers rather than 8-bit intensities; they are rescaled by their range.
_NUMERIC_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;32", "I;32B", "I;32S"}
# ICC colour-space signature each (normalised) mode needs in its profile.
_ICC_SPACE_FOR_MODE = {"RGB": "RGB", "L": "GRAY", "CMYK": "CMYK", "LAB": "LAB"}


# --------------------------------------------------------------------------- format sniffing


def sniff_format(head: bytes) -> str | None:
    """Name the image format from magic bytes so files with a missing or lying extension are found.

    Returns Pillow's format name ('JPEG', 'PNG', ...) or None if the bytes are not an image format
    this build can decode (32 bytes of header are enough for every format checked).
    """
    head = bytes(head[:32])
    fmt: str | None = None
    if head[:3] == b"\xff\xd8\xff":
        fmt = "JPEG"
    elif head[:8] == b"\x89PNG\r\n\x1a\n":
        fmt = "PNG"
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        fmt = "GIF"
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt = "WEBP"
    elif head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        fmt = "TIFF"
    elif head[:2] == b"BM" and len(head) >= 18:
        # "BM" alone is too weak (text files can start with it): require a known DIB header size.
        dib_header = int.from_bytes(head[14:18], "little")
        if dib_header in (12, 16, 40, 52, 56, 64, 108, 124):
            fmt = "BMP"
    elif head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        fmt = "JPEG2000"
    elif head[:4] == b"8BPS":
        fmt = "PSD"
    elif head[:4] == b"qoif":
        fmt = "QOI"
    elif head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            fmt = "AVIF"
        elif brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            fmt = "HEIF"
    elif len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        fmt = "PPM"
    if fmt is not None and fmt not in Image.OPEN:
        return None  # recognised, but this Pillow cannot decode it
    return fmt


# --------------------------------------------------------------------------- bytes and hashes


def read_file(path: str | os.PathLike) -> bytes:
    """Read a whole file, turning OS errors into a DecodeError whose reason a user understands."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DecodeError(path, _os_error_reason(exc)) from exc
    if not data:
        raise DecodeError(path, "file is empty")
    return data


def _os_error_reason(exc: OSError) -> str:
    """Short reason for a failed read; the errno matters more than the platform's wording."""
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    return f"cannot read file: {exc.strerror or exc}"


def content_hash(data: bytes) -> str:
    """Hash file bytes (blake2b-128) to find exact duplicates and files that were only moved."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# --------------------------------------------------------------------------- opening


def _label(source: Source, path_hint: str | os.PathLike | None) -> str:
    """Name used in error messages: the real path when we have one."""
    if path_hint is not None:
        return os.fspath(path_hint)
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<image>"
    return "<bytes>"


def _bomb_reason(exc: Exception) -> str:
    """Pillow only tells the pixel count in its message; keep it, it is what the user needs."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    limit = Image.MAX_IMAGE_PIXELS
    if match:
        return f"image too large: {int(match.group(1))} pixels (limit {limit})"
    return f"image too large: {exc}"


def _exception_reason(exc: BaseException) -> str:
    """Map whatever Pillow (or a plugin) raised to a short, human reason."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return _bomb_reason(exc)
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (unrecognised format)"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError):
        if "truncated" in msg or isinstance(exc, EOFError):
            return "truncated image data"
        if exc.errno is not None:
            return _os_error_reason(exc)
        return f"corrupt image data: {msg}"
    if isinstance(exc, EOFError):
        return "truncated image data"
    if isinstance(exc, SyntaxError):
        return f"corrupt image: {msg}"
    return f"cannot decode: {msg}"


def _check_bomb(im: Image.Image) -> None:
    """Refuse images over Image.MAX_IMAGE_PIXELS, not only over twice the limit.

    Pillow only warns (DecompressionBombWarning) between 1x and 2x the limit; turning that into
    an error through the warnings filters would mutate global state and not be thread-safe.
    """
    limit = Image.MAX_IMAGE_PIXELS
    pixels = im.width * im.height
    if limit and pixels > limit:
        raise Image.DecompressionBombError(
            f"Image size ({pixels} pixels) exceeds limit of {limit} pixels"
        )


def _open_lazy(data: bytes) -> Image.Image:
    """Open (header only) from memory, so no file handle outlives the call."""
    im = Image.open(io.BytesIO(data))
    _check_bomb(im)
    return im


def _orientation(im: Image.Image) -> int:
    """EXIF orientation (1 when absent or unreadable: a bad EXIF block must not lose the photo)."""
    try:
        if im.format == "PNG" and "exif" not in im.info:
            return 1  # PngImageFile.getexif() would force a full decode to look for a late eXIf
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
        value = int(value)
    except Exception as exc:  # noqa: BLE001 - malformed EXIF comes in every flavour
        log.debug("ignoring unreadable EXIF: %s", exc)
        return 1
    return value if value in _ORIENT_OPS else 1


# --------------------------------------------------------------------------- colour


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


def _to_rgb(im: Image.Image, icc: bytes | None) -> Image.Image:
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


# --------------------------------------------------------------------------- public API


def open_image(
    source: Source,
    *,
    min_size: int | None = None,
    path_hint: str | os.PathLike | None = None,
) -> Image.Image:
    """Decode a path, bytes or PIL image into a fully loaded, upright, sRGB RGB image.

    With ``min_size`` both sides of the result stay >= min_size (the model squashes the whole
    photo to min_size x min_size) but the image is otherwise shrunk as early as possible: JPEGs
    are DCT-scaled while decoding (several times faster on camera files), other formats are
    box-reduced by an integer factor right after decoding. Animated files give their first frame.
    Every failure becomes DecodeError(path, short reason); a lying extension does not matter.
    """
    label = _label(source, path_hint)
    if min_size is not None and min_size < 1:
        raise ValueError("min_size must be >= 1")
    try:
        return _open_image(source, min_size, label)
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - contract: every decoding failure is a DecodeError
        if not isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):
            log.debug("unexpected error decoding %s", label, exc_info=True)
        raise DecodeError(label, _exception_reason(exc)) from exc


def _open_image(source: Source, min_size: int | None, label: str) -> Image.Image:
    if isinstance(source, Image.Image):
        im = source
        im.load()
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if not data:
                raise DecodeError(label, "file is empty")
        else:
            try:
                data = read_file(source)
            except DecodeError as exc:
                raise DecodeError(label, exc.reason) from exc.__cause__
        im = _open_lazy(data)
        if min_size is not None and im.format in ("JPEG", "MPO"):
            # DCT scaling by 1/2, 1/4 or 1/8: requesting a square keeps BOTH sides >= min_size
            # whatever the orientation, so it is safe to rotate afterwards.
            im.draft("RGB", (min_size, min_size))
        im.load()  # a freshly opened file sits on frame 0: the first frame of an animation
    icc = im.info.get("icc_profile")
    orientation = _orientation(im)
    out = _to_rgb(im, icc)
    if min_size is not None:
        factor = min(out.width // min_size, out.height // min_size)
        if factor >= 2:
            out = out.reduce(factor)
    op = _ORIENT_OPS.get(orientation)
    if op is not None:
        out = out.transpose(op)
    if out is source:
        out = out.copy()  # never hand back (and let callers mutate) the caller's own object
    out.info.pop("icc_profile", None)  # pixels are sRGB now; a stale profile would mislead
    out.info.pop("exif", None)  # upright now: decoding the result again must not re-rotate
    return out


def image_info(source: Source) -> dict[str, Any]:
    """Cheap header-only facts: upright width/height, format and the stored mode."""
    label = _label(source, None)
    try:
        if isinstance(source, Image.Image):
            im = source
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if not source:
                raise DecodeError(label, "file is empty")
            im = _open_lazy(bytes(source))
        else:
            # Only the header is needed, so read through a handle instead of the whole file.
            try:
                fh = open(source, "rb")
            except OSError as exc:
                raise DecodeError(label, _os_error_reason(exc)) from exc
            with fh:
                head = fh.read(1)
                if not head:
                    raise DecodeError(label, "file is empty")
                fh.seek(0)
                im = Image.open(fh)
                _check_bomb(im)
                info = _info_of(im)
                im.close()
                return info
        return _info_of(im)
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DecodeError(label, _exception_reason(exc)) from exc


def _info_of(im: Image.Image) -> dict[str, Any]:
    width, height = im.size
    if _orientation(im) in (5, 6, 7, 8):
        width, height = height, width
    return {"width": width, "height": height, "format": im.format, "mode": im.mode}

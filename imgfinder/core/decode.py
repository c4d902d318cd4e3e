"""Robust photo decoding: any photo file becomes a loaded, upright, sRGB RGB image.

Pillow decodes the common formats, pillow-heif HEIC/HEIF, Pillow's own plugin AVIF, and rawpy
(LibRaw) camera RAW files (raw.py). When the caller needs only a small image (`min_size`), the
decoder takes the cheapest route that still gives both sides >= min_size: a camera JPEG's MPF
preview, JPEG DCT scaling (1/2..1/8 while decoding, so a gigapixel JPEG never exists in memory
at full size), a RAW's embedded preview or a half-size demosaic. `decode()` says which one was
used (`Decoded.source`).

Decompression bombs: a file whose decode would hold more than Pillow's MAX_IMAGE_PIXELS
(89 MP by default) is refused with a readable reason. That budget counts the pixels actually
decoded, so large baseline JPEGs decoded at reduced size pass, while a 50000 x 50000 PNG (or
a progressive JPEG, whose decoder buffers every coefficient) does not. Images are opened
through the format's plugin directly, so Pillow's DecompressionBombWarning never reaches
stderr, and Pillow's globals are left untouched.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import re
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from imgfinder.core import photometa
from imgfinder.core import raw as rawdecode
from imgfinder.core.formats import (  # noqa: F401 (the extension lists: part of this API)
    IMAGE_EXTENSIONS,
    RAW_EXTENSIONS,
    UNSUPPORTED_IMAGE_FORMATS,
    sniff_format,
)
from imgfinder.core.photometa import PhotoMeta
from imgfinder.core.srgb import to_rgb as _to_rgb
from imgfinder.errors import DecodeError

log = logging.getLogger(__name__)

# HEIC/HEIF support (pillow-heif) is registered, and every Pillow plugin loaded, by formats.py.

Source = str | os.PathLike | bytes | bytearray | memoryview | Image.Image


# How the model's image was obtained (the catalog records it per photo).
SOURCE_FULL = "full"  # decoded at full size (then box-reduced when a small image was wanted)
SOURCE_DCT = "dct-draft"  # JPEG DCT-scaled while decoding
SOURCE_MPF = "mpf-preview"  # a camera JPEG's embedded MPF preview
SOURCE_RAW_PREVIEW = "raw-preview"  # a RAW's embedded JPEG preview
SOURCE_RAW_DEMOSAIC = "raw-demosaic"  # a RAW demosaiced by LibRaw (half size when possible)

# MPF entry types of a camera's own preview of the same picture (CIPA DC-007); other types are
# other pictures (stereo views, panorama parts) and never replace the main image.
_MPF_PREVIEW_TYPES = ("Large Thumbnail (VGA Equivalent)", "Large Thumbnail (Full HD Equivalent)")
_MPF_ASPECT_TOLERANCE = 0.01

# Decodes holding more than this many pixels run one at a time, so N decoder threads on N huge
# files never hold N huge bitmaps together (memory stays bounded by one).
BIG_DECODE_PIXELS = 40_000_000
_BIG_DECODE = threading.BoundedSemaphore(1)

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
    """Our own refusals are already readable; Pillow's only tell the pixel count: keep that."""
    text = str(exc)
    if text.startswith("image too large"):
        return text
    match = re.search(r"\((\d+) pixels\)", text)
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


def _reducible(im: Image.Image) -> bool:
    """A JPEG libjpeg can decode at 1/2..1/8 scale without buffering the whole image.

    Progressive JPEGs are not: the decoder keeps every DCT coefficient of the full image
    (about 3 bytes per pixel), so their memory is that of a full decode.
    """
    return im.format in ("JPEG", "MPO") and not (
        im.info.get("progressive") or im.info.get("progression")
    )


def _draft_scale(size: tuple[int, int], min_size: int) -> int:
    """The DCT scale Pillow's JpegImageFile.draft picks for a (min_size, min_size) request."""
    scale = min(size[0] // min_size, size[1] // min_size)
    for s in (8, 4, 2, 1):
        if scale >= s:
            return s
    return 1


def _decoded_pixels(im: Image.Image, min_size: int | None) -> int:
    """Pixels a decode of `im` holds at once (the DCT-scaled size for a reducible JPEG)."""
    w, h = im.size
    if min_size is not None and _reducible(im):
        s = _draft_scale((w, h), min_size)
        return -(-w // s) * -(-h // s)
    return w * h


def _check_bomb(im: Image.Image, min_size: int | None = None, *, header_only: bool = False) -> None:
    """Refuse a decode that would hold more than Image.MAX_IMAGE_PIXELS pixels.

    Unlike Pillow's own check this counts the pixels really decoded: a 150 MP baseline JPEG
    DCT-scaled to 19 MP passes, a PNG of the same size does not. `header_only` (image_info)
    accepts any reducible JPEG, since some caller can always decode it at reduced size.
    Pillow only warns between 1x and 2x its limit; this refuses from 1x, without touching the
    warnings filters (global state, not thread-safe).
    """
    limit = Image.MAX_IMAGE_PIXELS
    if not limit:
        return
    w, h = im.size
    pixels = w * h
    if pixels <= limit or (header_only and _reducible(im)):
        return
    if _decoded_pixels(im, min_size) <= limit:
        return
    fmt = im.format or "this"
    if im.format in ("JPEG", "MPO") and not _reducible(im):
        why = "a progressive JPEG is decoded at full size"
    elif im.format in ("JPEG", "MPO"):
        why = "decoded at full size"
    else:
        why = f"{fmt} images cannot be decoded at reduced size"
    raise Image.DecompressionBombError(
        f"image too large: {pixels} pixels ({w} x {h}; limit {limit}, {why})"
    )


def _open_unchecked(fp) -> Image.Image:
    """Image.open without Pillow's bomb check (and its stderr warning): _check_bomb decides.

    The sniffed format's plugin is called directly, as Image.open would after its prefix test;
    formats we do not sniff (TGA, ...) go through Image.open itself.
    """
    fmt = sniff_format(fp.read(32))
    fp.seek(0)
    if fmt is not None and fmt in Image.OPEN:
        factory, _accept = Image.OPEN[fmt]
        try:
            return factory(fp, "")
        except (SyntaxError, IndexError, TypeError, struct.error):
            fp.seek(0)  # what Image.open does on these: try the other plugins
    return Image.open(fp)


def _open_lazy(data: bytes, min_size: int | None = None) -> Image.Image:
    """Open (header only) from memory, so no file handle outlives the call."""
    im = _open_unchecked(io.BytesIO(data))
    _check_bomb(im, min_size)
    return im


def _is_raw(data: bytes, label: str) -> bool:
    """A RAW by its extension or magic; a DNG also by its DNGVersion tag when nothing names it
    (bytes without a path, or a file without a known extension)."""
    if not rawdecode.AVAILABLE:
        return False
    ext = os.path.splitext(label)[1].lower()
    if ext in rawdecode.RAW_EXTENSIONS or rawdecode.sniff_raw(data[:16]):
        return True
    return ext not in IMAGE_EXTENSIONS and data[:4] in _TIFF_MAGIC and _has_dng_version(data)


def _has_dng_version(data: bytes) -> bool:
    try:
        exif = Image.Exif()
        exif.load(data)
        return _DNG_VERSION in exif
    except Exception:  # noqa: BLE001 - not a readable TIFF directory: not a DNG
        return False


@contextmanager
def _memory_turn(pixels: int):
    """Let only one decode above BIG_DECODE_PIXELS run at a time (see BIG_DECODE_PIXELS)."""
    if pixels <= BIG_DECODE_PIXELS:
        yield
        return
    with _BIG_DECODE:
        yield


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


# --------------------------------------------------------------------------- public API


@dataclass
class Decoded:
    """A decoded photo plus what the catalog records about it."""

    image: Image.Image  # RGB, upright, sRGB; >= min_size on both sides when one was given
    width: int  # the photo's real upright size (not the reduced decode's)
    height: int
    format: str  # Pillow's format name, or "RAW"
    source: str  # SOURCE_*: which route produced `image`
    meta: PhotoMeta | None = None  # with_meta=True: capture date, camera, lens, exposure, GPS


def open_image(
    source: Source,
    *,
    min_size: int | None = None,
    path_hint: str | os.PathLike | None = None,
) -> Image.Image:
    """Decode a path, bytes or PIL image into a fully loaded, upright, sRGB RGB image.

    With ``min_size`` both sides of the result stay >= min_size (the model squashes the whole
    photo to min_size x min_size) but the image is otherwise shrunk as early as possible: JPEGs
    are DCT-scaled while decoding (several times faster on camera files) or replaced by their
    MPF preview, RAW files give their embedded preview or a half-size demosaic, other formats
    are box-reduced by an integer factor right after decoding. Animated files give their first
    frame. Every failure becomes DecodeError(path, short reason); a lying extension does not
    matter (but a RAW file is recognised by its extension or its magic bytes).
    """
    return decode(source, min_size=min_size, path_hint=path_hint).image


def decode(
    source: Source,
    *,
    min_size: int | None = None,
    path_hint: str | os.PathLike | None = None,
    with_meta: bool = False,
) -> Decoded:
    """Like open_image, and also the photo's real size, the route taken and (with_meta) EXIF."""
    label = _label(source, path_hint)
    if min_size is not None and min_size < 1:
        raise ValueError("min_size must be >= 1")
    try:
        return _decode(source, min_size, label, with_meta)
    except DecodeError:
        raise
    except rawdecode.RawError as exc:
        raise DecodeError(label, exc.reason) from exc
    except Exception as exc:  # noqa: BLE001 - contract: every decoding failure is a DecodeError
        if not isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):
            log.debug("unexpected error decoding %s", label, exc_info=True)
        reason = _exception_reason(exc)
        if isinstance(exc, UnidentifiedImageError):
            ext = os.path.splitext(str(path_hint or label))[1].lower()
            reason = UNSUPPORTED_IMAGE_FORMATS.get(ext, reason)
        raise DecodeError(label, reason) from exc


def _source_bytes(source: Source, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise DecodeError(label, "file is empty")
        return data
    try:
        return read_file(source)
    except DecodeError as exc:
        raise DecodeError(label, exc.reason) from exc.__cause__


def _mpf_preview(im: Image.Image, min_size: int) -> int | None:
    """Frame number of a camera JPEG's MPF preview of the same picture that is big enough.

    Only entries typed "Large Thumbnail" qualify (stereo views and panorama parts are other
    pictures); the preview must keep the main image's aspect ratio. Its size is only known
    after seeking, which reads just that frame's header.
    """
    if im.format != "MPO" or getattr(im, "n_frames", 1) < 2:
        return None
    try:
        entries = im.mpinfo[0xB002]
    except (AttributeError, KeyError, TypeError):
        return None
    w, h = im.size
    best = None
    for frame, entry in enumerate(entries):
        if frame == 0 or entry.get("Attribute", {}).get("MPType") not in _MPF_PREVIEW_TYPES:
            continue
        try:
            im.seek(frame)
            pw, ph = im.size
        except Exception as exc:  # noqa: BLE001 - a broken preview: decode the main image
            log.debug("unreadable MPF preview %d: %s", frame, exc)
            continue
        finally:
            im.seek(0)
        if min(pw, ph) < min_size or pw * ph >= w * h:
            continue
        if abs(pw / ph - w / h) > _MPF_ASPECT_TOLERANCE * (w / h):
            continue
        if best is None or pw * ph < best[1]:  # the smallest that is big enough
            best = (frame, pw * ph)
    return None if best is None else best[0]


def _facts(im: Image.Image, with_meta: bool) -> tuple[int, bytes | None, PhotoMeta | None]:
    return (
        _orientation(im),
        im.info.get("icc_profile"),
        photometa.from_image(im) if with_meta else None,
    )


def _decode(source: Source, min_size: int | None, label: str, with_meta: bool) -> Decoded:
    meta: PhotoMeta | None = None
    if isinstance(source, Image.Image):
        im = source
        im.load()
        fmt = im.format or ""
        route = SOURCE_FULL
        orientation = _orientation(im)
        icc = im.info.get("icc_profile")
        main_size = im.size
        if with_meta:
            meta = photometa.from_image(im)
    else:
        data = _source_bytes(source, label)
        if _is_raw(data, label):
            return _decode_raw(data, min_size, with_meta)
        im = _open_lazy(data, min_size)
        fmt = im.format or ""
        main_size = im.size
        main_facts = None
        route = SOURCE_FULL
        pixels = im.width * im.height
        if min_size is not None and im.format in ("JPEG", "MPO"):
            frame = _mpf_preview(im, min_size)
            if frame is not None:
                # the main image's facts, before the seek replaces them with the preview's
                main_facts = _facts(im, with_meta)
                im.seek(frame)
                route = SOURCE_MPF
            # DCT scaling by 1/2, 1/4 or 1/8: requesting a square keeps BOTH sides >= min_size
            # whatever the orientation, so it is safe to rotate afterwards.
            before = im.size
            im.draft("RGB", (min_size, min_size))
            if route == SOURCE_FULL and im.size != before:
                route = SOURCE_DCT
            pixels = im.width * im.height if _reducible(im) else pixels
        with _memory_turn(pixels):
            im.load()  # a freshly opened file sits on frame 0: the first frame of an animation
        # after load: some plugins (TIFF) only expose their tags once loaded
        orientation, icc, meta = main_facts or _facts(im, with_meta)
    full_w, full_h = main_size[::-1] if orientation in (5, 6, 7, 8) else main_size
    out = _finish(im, icc, orientation, min_size)
    if out is source:
        out = out.copy()  # never hand back (and let callers mutate) the caller's own object
    return Decoded(out, full_w, full_h, fmt, route, meta)


def _finish(im: Image.Image, icc: bytes | None, orientation: int, min_size: int | None):
    """Colour to sRGB, integer box-reduce towards min_size, then the EXIF rotation."""
    with _memory_turn(im.width * im.height):
        out = _to_rgb(im, icc)
        if min_size is not None:
            factor = min(out.width // min_size, out.height // min_size)
            if factor >= 2:
                out = out.reduce(factor)
    op = _ORIENT_OPS.get(orientation)
    if op is not None:
        out = out.transpose(op)
    out.info.pop("icc_profile", None)  # pixels are sRGB now; a stale profile would mislead
    out.info.pop("exif", None)  # upright now: decoding the result again must not re-rotate
    return out


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_DNG_VERSION = 0xC612


def _tiff_meta(data: bytes) -> PhotoMeta:
    """EXIF of a TIFF-based RAW (DNG, NEF, CR2, ARW, PEF, ...): its IFD0 and EXIF IFD are
    plain TIFF directories, read without asking Pillow to understand the sensor data."""
    if data[:4] not in _TIFF_MAGIC:
        return PhotoMeta()  # CR3, RAF, ORF, RW2: LibRaw's fields only
    try:
        exif = Image.Exif()
        exif.load(data)
        return photometa.from_exif(exif)
    except Exception as exc:  # noqa: BLE001 - a damaged directory: LibRaw's fields only
        log.debug("no TIFF EXIF in RAW: %s", exc)
        return PhotoMeta()


def _decode_raw(data: bytes, min_size: int | None, with_meta: bool) -> Decoded:
    tiff = data[:4] in _TIFF_MAGIC
    # LibRaw's own fields only where the EXIF is not plain TIFF (they cost an unpack)
    got = rawdecode.decode_raw(data, min_size, libraw_meta=with_meta and not tiff)
    with _memory_turn(got.image.width * got.image.height):
        out = _to_rgb(got.image, got.icc)
        if min_size is not None:
            factor = min(out.width // min_size, out.height // min_size)
            if factor >= 2:
                out = out.reduce(factor)
    out.info.pop("icc_profile", None)
    out.info.pop("exif", None)
    meta = None
    if with_meta:
        meta = _tiff_meta(data) if tiff else (got.meta or PhotoMeta())
    return Decoded(out, got.width, got.height, "RAW", got.source, meta)


def image_info(source: Source) -> dict[str, Any]:
    """Cheap header-only facts: upright width/height, format and the stored mode."""
    label = _label(source, None)
    try:
        if isinstance(source, Image.Image):
            im = source
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if not source:
                raise DecodeError(label, "file is empty")
            data = bytes(source)
            if _is_raw(data, label):
                w, h = rawdecode.raw_size(data)
                return {"width": w, "height": h, "format": "RAW", "mode": "RGB"}
            im = _open_unchecked(io.BytesIO(data))
            _check_bomb(im, header_only=True)
        else:
            # Only the header is needed, so read through a handle instead of the whole file.
            try:
                fh = open(source, "rb")
            except OSError as exc:
                raise DecodeError(label, _os_error_reason(exc)) from exc
            with fh:
                head = fh.read(32)
                if not head:
                    raise DecodeError(label, "file is empty")
                fh.seek(0)
                if _is_raw(head, label):
                    w, h = rawdecode.raw_size(fh.read())
                    return {"width": w, "height": h, "format": "RAW", "mode": "RGB"}
                im = _open_unchecked(fh)
                _check_bomb(im, header_only=True)
                info = _info_of(im)
                im.close()
                return info
        return _info_of(im)
    except DecodeError:
        raise
    except rawdecode.RawError as exc:
        raise DecodeError(label, exc.reason) from exc
    except Exception as exc:  # noqa: BLE001
        raise DecodeError(label, _exception_reason(exc)) from exc


def _info_of(im: Image.Image) -> dict[str, Any]:
    width, height = im.size
    if _orientation(im) in (5, 6, 7, 8):
        width, height = height, width
    return {"width": width, "height": height, "format": im.format, "mode": im.mode}


def read_meta(source: str | os.PathLike) -> PhotoMeta:
    """Capture date, camera, lens, exposure and GPS of a file from its headers (no decode).

    Never raises: a file that cannot be read has no metadata (empty PhotoMeta).
    """
    label = os.fspath(source)
    try:
        if os.path.splitext(label)[1].lower() in rawdecode.RAW_EXTENSIONS or _raw_magic(label):
            data = read_file(source)
            if data[:4] in _TIFF_MAGIC:
                return _tiff_meta(data)
            return rawdecode.raw_meta(data)
        with open(source, "rb") as fh:
            im = _open_unchecked(fh)
            try:
                return photometa.from_image(im)
            finally:
                im.close()
    except Exception as exc:  # noqa: BLE001 - metadata is a bonus
        log.debug("no metadata for %s: %s", label, exc)
        return PhotoMeta()


def _raw_magic(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return rawdecode.AVAILABLE and rawdecode.sniff_raw(fh.read(16))
    except OSError:
        return False

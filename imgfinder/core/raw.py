"""Camera RAW files through rawpy (LibRaw): the embedded JPEG preview when it is big enough,
else a half-size demosaic; upright (the RAW's own orientation) and in sRGB.

Only `decode.py` calls this module; it returns plain PIL images and never touches the file
(LibRaw reads from the bytes already in memory for the content hash).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgfinder.core.photometa import PhotoMeta

log = logging.getLogger(__name__)

try:
    import rawpy

    AVAILABLE = True
except ImportError:  # pragma: no cover - rawpy is a required dependency
    rawpy = None
    AVAILABLE = False

# Extensions of camera RAW formats LibRaw reads. DNG, NEF, CR2, ARW, ... are TIFF inside, so
# Pillow would open them and see only the small embedded thumbnail: the extension decides.
RAW_EXTENSIONS: frozenset[str] = frozenset(
    ".dng .nef .nrw .cr2 .cr3 .crw .arw .srf .sr2 .raf .orf .rw2 .pef .srw .x3f .3fr .iiq "
    ".erf .kdc .dcr .mrw .rwl .mos .mef".split()
)

# A RAW bigger than this (sensor pixels) is refused: LibRaw holds 8 bytes per pixel while
# demosaicing at half size; the largest medium-format sensors today are about 150 MP.
MAX_RAW_PIXELS = 400_000_000

# LibRaw's flip -> the transpose that makes the image upright (flip 5: 90 deg CCW, 6: CW).
_FLIP_OPS = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.ROTATE_90,
    6: Image.Transpose.ROTATE_270,
}
# A preview whose aspect ratio differs more than this from the sensor's is letterboxed or
# cropped (some cameras embed a 16:9 or 4:3 preview): the model would see another picture.
_ASPECT_TOLERANCE = 0.03


def sniff_raw(head: bytes) -> bool:
    """RAW formats recognisable from their first bytes (the TIFF-based ones are not)."""
    head = bytes(head[:16])
    return (
        head.startswith(b"FUJIFILMCCD-RAW")  # RAF
        or head[4:12] == b"ftypcrx "  # CR3
        or head[:4] in (b"IIRO", b"IIRS", b"MMOR")  # ORF
        or head[:4] == b"IIU\x00"  # RW2
    )


@dataclass
class RawDecoded:
    image: Image.Image  # RGB, upright, sRGB
    width: int  # the photo's upright size (sensor's visible area)
    height: int
    source: str  # "raw-preview" or "raw-demosaic"
    icc: bytes | None = None  # the preview's embedded profile (demosaic output is sRGB)
    meta: PhotoMeta | None = None  # LibRaw's exposure and lens fields (no make/model)


class RawError(Exception):
    """A RAW file LibRaw cannot read; `reason` is what the Skipped files panel shows."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _reason(exc: Exception) -> str:
    name = type(exc).__name__
    msg = exc.args[0] if exc.args else ""
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    msg = str(msg).strip()
    if name in ("LibRawFileUnsupportedError", "LibRawUnsupportedThumbnailError"):
        return "unsupported RAW format (not a camera file LibRaw knows)"
    if name == "LibRawIOError" or "end of file" in msg.lower():
        return "truncated RAW data"
    if name in ("LibRawDataError", "LibRawRequestForNonexistentImageError"):
        return f"corrupt RAW data: {msg or name}"
    if name in ("LibRawTooBigError", "LibRawMemoryError") or isinstance(exc, MemoryError):
        return "RAW image too large to decode"
    return f"cannot decode RAW: {msg or name}"


def _upright_size(sizes) -> tuple[int, int]:
    w, h = int(sizes.width), int(sizes.height)
    return (h, w) if int(sizes.flip) in (5, 6) else (w, h)


def raw_size(data: bytes) -> tuple[int, int]:
    """Upright (width, height) of a RAW from its headers only."""
    if not AVAILABLE:
        raise RawError("camera RAW support needs rawpy (pip install rawpy)")
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            return _upright_size(raw.sizes)
    except Exception as exc:  # noqa: BLE001 - every LibRaw failure becomes a reason
        raise RawError(_reason(exc)) from exc


def _libraw_meta(raw) -> PhotoMeta:
    """Exposure, lens and focal length as LibRaw parsed them (for CR3, RAF, ORF, ... whose
    EXIF Pillow cannot reach). LibRaw's timestamp is left out: it went through mktime().
    Reading `other` makes rawpy unpack the sensor data (~0.15 s on 24 MP): free after a
    demosaic, costly otherwise, hence only on request."""
    try:
        other, lens = raw.other, raw.lens
    except Exception:  # noqa: BLE001 - older rawpy without these fields
        return PhotoMeta()

    def pos(v):
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        return v if 0 < v < 1e7 else None

    iso = pos(other.iso_speed)
    return PhotoMeta(
        lens=(str(lens.model).strip() or None) if getattr(lens, "model", None) else None,
        exposure_time=pos(other.shutter_speed),
        f_number=pos(other.aperture),
        iso=int(iso) if iso else None,
        focal_length=pos(other.focal_length),
    )


def raw_meta(data: bytes) -> PhotoMeta:
    """LibRaw's metadata fields of a RAW (empty when LibRaw cannot open it)."""
    if not AVAILABLE:
        return PhotoMeta()
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            return _libraw_meta(raw)
    except Exception as exc:  # noqa: BLE001
        log.debug("no LibRaw metadata: %s", exc)
        return PhotoMeta()


def _preview(
    raw, min_size: int, width: int, height: int
) -> tuple[Image.Image, bytes | None] | None:
    """The embedded preview, DCT-scaled, when both its sides reach min_size and its shape fits."""
    try:
        thumb = raw.extract_thumb()
    except Exception as exc:  # noqa: BLE001 - no or unreadable thumbnail: demosaic instead
        log.debug("no usable RAW preview: %s", exc)
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        im = Image.open(io.BytesIO(thumb.data))
        if im.format not in ("JPEG", "MPO"):
            return None
    else:  # an RGB bitmap
        arr = np.asarray(thumb.data)
        if arr.ndim != 3 or arr.shape[2] != 3:
            return None
        im = Image.fromarray(arr.astype(np.uint8), "RGB")
    pw, ph = im.size
    # the preview is stored in sensor orientation: compare with the sensor's shape
    sw, sh = (height, width) if int(raw.sizes.flip) in (5, 6) else (width, height)
    if min(pw, ph) < min_size:
        return None
    if abs(pw / ph - sw / sh) > _ASPECT_TOLERANCE * (sw / sh):
        log.debug("RAW preview %dx%d does not match the sensor's %dx%d", pw, ph, sw, sh)
        return None
    icc = im.info.get("icc_profile")
    if im.format in ("JPEG", "MPO"):
        im.draft("RGB", (min_size, min_size))
    im.load()
    return im, icc


def decode_raw(data: bytes, min_size: int | None, *, libraw_meta: bool = False) -> RawDecoded:
    """Decode a RAW: its preview when both sides reach min_size, else a demosaic.

    `libraw_meta`: also fill `meta` from LibRaw's fields (for RAWs whose EXIF is not TIFF).

    With min_size the demosaic is half-size (LibRaw's 2x2 binning: 4x less work) whenever
    that still leaves both sides >= min_size; without it the full-size demosaic is used.
    """
    if not AVAILABLE:
        raise RawError("camera RAW support needs rawpy (pip install rawpy)")
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            width, height = _upright_size(raw.sizes)
            if width * height > MAX_RAW_PIXELS:
                raise RawError(
                    f"RAW image too large: {width * height} pixels (limit {MAX_RAW_PIXELS})"
                )
            flip_op = _FLIP_OPS.get(int(raw.sizes.flip))
            if min_size is not None:
                got = _preview(raw, min_size, width, height)
                if got is not None:
                    im, icc = got
                    if flip_op is not None:
                        im = im.transpose(flip_op)
                    meta = _libraw_meta(raw) if libraw_meta else None
                    return RawDecoded(im, width, height, "raw-preview", icc, meta)
            half = min_size is not None and min(width, height) // 2 >= min_size
            rgb = raw.postprocess(
                half_size=half,
                use_camera_wb=True,
                output_color=rawpy.ColorSpace.sRGB,
                output_bps=8,
            )  # LibRaw applies the file's orientation itself
            image = Image.fromarray(rgb, "RGB")
            meta = _libraw_meta(raw) if libraw_meta else None
            return RawDecoded(image, width, height, "raw-demosaic", None, meta)
    except RawError:
        raise
    except Exception as exc:  # noqa: BLE001 - every LibRaw failure becomes a reason
        raise RawError(_reason(exc)) from exc

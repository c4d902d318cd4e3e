"""Image file formats: the extensions a scan lists (limited to what this build can decode),
the formats it reports as unsupported, and format sniffing from magic bytes (a file with a
missing or lying extension is still found)."""

from __future__ import annotations

import logging

from PIL import Image

from imgfinder.core import raw as rawdecode

log = logging.getLogger(__name__)

# HEIC/HEIF (every iPhone photo) through pillow-heif, a required dependency. Registering the
# opener once at import time (never per call) keeps decoding thread-safe. A broken install
# is logged, not fatal: the other formats still work and HEIC files get a clear reason.
try:
    import pillow_heif  # type: ignore[import-not-found]

    pillow_heif.register_heif_opener()
except Exception as _exc:  # noqa: BLE001  # pragma: no cover - a broken installation
    log.warning("HEIC/HEIF support unavailable (pillow-heif: %s)", _exc)

# Load every plugin now, in the importing thread: Image.open would otherwise initialise the plugin
# registry lazily on its first failure, which could race between worker threads.
Image.init()

# Extensions photographers actually have, limited to what this Pillow build can open (so a HEIC
# appears only with pillow-heif, AVIF only when Pillow was built with libavif).
_CANDIDATE_EXTENSIONS = (
    ".jpg .jpeg .jpe .jfif .mpo .png .apng .webp .tif .tiff .bmp .dib .gif "
    ".jp2 .j2k .jpf .jpx .avif .heic .heif .psd .tga .ppm .pgm .pbm .pnm .qoi"
).split()
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    ext for ext in _CANDIDATE_EXTENSIONS if ext in Image.registered_extensions()
) | (rawdecode.RAW_EXTENSIONS if rawdecode.AVAILABLE else frozenset())
RAW_EXTENSIONS = rawdecode.RAW_EXTENSIONS

# Image formats people keep beside their photos that imgfinder does not decode: the scan lists
# them so they show as skipped with this reason, instead of vanishing without a word.
UNSUPPORTED_IMAGE_FORMATS: dict[str, str] = {
    ".svg": "SVG vector drawings are not supported",
    ".svgz": "SVG vector drawings are not supported",
    ".eps": "EPS (PostScript) drawings are not supported",
    ".ai": "Adobe Illustrator drawings are not supported",
    ".jxl": "JPEG XL is not supported yet",
    ".exr": "OpenEXR (HDR) images are not supported",
}


def sniff_format(head: bytes) -> str | None:
    """Name the image format from magic bytes so files with a missing or lying extension are found.

    Returns Pillow's format name ('JPEG', 'PNG', ...), 'RAW' for camera RAW formats with a magic
    of their own (CR3, RAF, ORF, RW2; the TIFF-based ones read as 'TIFF'), or None if the bytes
    are not an image format this build can decode (32 bytes of header are enough).
    """
    head = bytes(head[:32])
    fmt: str | None = None
    if rawdecode.AVAILABLE and rawdecode.sniff_raw(head):
        return "RAW"
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

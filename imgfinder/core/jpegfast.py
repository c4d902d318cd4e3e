"""Small decodes of plain JPEGs by OpenCV, for the duplicate signature and the ORB check.

Signing (imagesig.py, through dupes/sigindex.py) and the ORB-first check without the CNN
(dupes/geometry.py) only need a small picture, and most photos are baseline JPEGs. For
those, `small_jpeg` has libjpeg decode the photo DCT-scaled as decode.decode would scale it
(the same scale and integer box-reduce, then the EXIF rotation), in one C call that holds no
Python lock: cheaper than decode.decode, and two threads really decode at once. It decodes
colour (RGB), not the luma alone: the border trim (imageborder.py) looks at colour, and a
grey-only trim cuts more off smooth pictures, which would change their signatures.

It only takes files where nothing is lost by skipping decode.decode: a baseline/extended
sequential 8-bit JPEG with 1 or 3 components that ends with its EOI marker, without an ICC
profile (decode.decode converts to sRGB first), an MPF preview (decode.decode decodes that
smaller picture instead), an Adobe marker (CMYK, or RGB coded), or a decode large enough for
decode.py's bomb and memory rules. Anything else, and any surprise in the markers, returns
None, and the caller uses decode.decode, so every failure still gets decode.py's reasons.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from imgfinder.core import decode

_SOF_SEQUENTIAL = (0xC0, 0xC1)  # baseline, extended sequential (Huffman)
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length field


def _cv2():
    import cv2  # noqa: PLC0415 (an app dependency, imported on first use: start-up stays fast)

    return cv2


def _flags(scale: int) -> int:
    cv2 = _cv2()
    colour = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[scale]
    return colour | cv2.IMREAD_IGNORE_ORIENTATION  # the EXIF rotation is applied here, as decode's


def jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) of a JPEG this route takes, else None (see above)."""
    if data[:2] != b"\xff\xd8" or data.rstrip(b"\0")[-2:] != b"\xff\xd9":
        return None  # not a JPEG, or truncated (libjpeg would fill the rest with grey)
    size = None
    orientation = 1
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2 or i + 2 + length > n:
            return None
        seg = data[i + 4 : i + 2 + length]
        if marker == 0xDA:  # start of scan: every header has been seen
            return None if size is None else (*size, orientation)
        if marker in _SOF_SEQUENTIAL:
            if size is not None or len(seg) < 6 or seg[0] != 8 or seg[5] not in (1, 3):
                return None
            size = (int.from_bytes(seg[3:5], "big"), int.from_bytes(seg[1:3], "big"))
            if 0 in size:
                return None
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return None  # progressive, lossless, arithmetic-coded: decode.decode's route
        elif marker == 0xE2 and (seg.startswith(b"ICC_PROFILE\0") or seg.startswith(b"MPF\0")):
            return None
        elif marker == 0xEE and seg.startswith(b"Adobe"):
            return None
        elif marker == 0xE1 and seg.startswith(b"Exif\0\0"):
            got = _exif_orientation(seg[6:])
            if got is None:
                return None
            orientation = got
        elif marker == 0xD9:
            return None
        i += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of IFD0 (1 when absent or out of range); None when unreadable."""
    order = {b"II*\x00": "little", b"MM\x00*": "big"}.get(tiff[:4])
    if order is None or len(tiff) < 8:
        return None
    off = int.from_bytes(tiff[4:8], order)
    if off + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[off : off + 2], order)
    if off + 2 + 12 * count > len(tiff):
        return None
    for k in range(count):
        e = off + 2 + 12 * k
        if int.from_bytes(tiff[e : e + 2], order) == 0x0112:
            if int.from_bytes(tiff[e + 2 : e + 4], order) != 3:  # SHORT
                return None
            value = int.from_bytes(tiff[e + 8 : e + 10], order)
            return value if value in decode._ORIENT_OPS else 1
    return 1


def small_jpeg(data: bytes, min_size: int) -> tuple[Image.Image, int, int] | None:
    """(upright RGB image with both sides >= min_size when the photo has them, the
    photo's upright width, height) by decode.decode's scaling rules, or None: not a JPEG this
    route takes (use decode.decode)."""
    head = jpeg_header(data)
    if head is None:
        return None
    w, h, orientation = head
    scale = decode._draft_scale((w, h), min_size)
    out_w, out_h = math.ceil(w / scale), math.ceil(h / scale)
    limit = Image.MAX_IMAGE_PIXELS or math.inf
    if out_w * out_h > min(limit, decode.BIG_DECODE_PIXELS):
        return None  # decode.py's bomb refusal and one-at-a-time rule decide these
    cv2 = _cv2()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _flags(scale))
    if bgr is None or bgr.shape != (out_h, out_w, 3):
        return None
    img = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    factor = min(out_w // min_size, out_h // min_size)
    if factor >= 2:
        img = img.reduce(factor)
    op = decode._ORIENT_OPS.get(orientation)
    if op is not None:
        img = img.transpose(op)
    full_w, full_h = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    return img, full_w, full_h


def open_small(
    data: bytes, min_size: int, path_hint: str | None = None
) -> tuple[Image.Image, int, int]:
    """(upright image, the photo's upright width, height): small_jpeg when it takes the file,
    else decode.decode with the same min_size (every format; raises DecodeError)."""
    got = small_jpeg(data, min_size)
    if got is not None:
        return got
    d = decode.decode(data, min_size=min_size, path_hint=path_hint)
    return d.image, d.width, d.height

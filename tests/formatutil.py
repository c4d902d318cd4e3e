"""Generate photographers' files in tests: DNG RAW (pidng), HEIC, AVIF, camera JPEGs with an MPF
preview and EXIF, and very large JPEGs written strip by strip (never held in memory)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# --------------------------------------------------------------------------- EXIF


def camera_exif(
    *,
    taken: str = "2024:05:01 14:03:22",
    offset: str | None = "+02:00",
    make: str = "Nikon Corporation",
    model: str = "NIKON Z 6",
    lens: str = "NIKKOR Z 24-70mm f/4 S",
    exposure: tuple[int, int] = (1, 250),
    f_number: tuple[int, int] = (28, 10),
    iso: int = 400,
    focal: tuple[int, int] = (50, 1),
    gps: bool = True,
    orientation: int | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = model
    exif[0x0132] = taken
    if orientation is not None:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = taken
    if offset:
        sub[0x9011] = offset
    sub[0x829A] = exposure[0] / exposure[1]
    sub[0x829D] = f_number[0] / f_number[1]
    sub[0x8827] = iso
    sub[0x920A] = focal[0] / focal[1]
    sub[0xA434] = lens
    if gps:
        g = exif.get_ifd(0x8825)
        g[1] = "N"
        g[2] = (48.0, 51.0, 29.0)
        g[3] = "E"
        g[4] = (2.0, 17.0, 40.0)
    return exif


# --------------------------------------------------------------------------- RAW (DNG)


def bayer_mosaic(rgb: np.ndarray, bits: int = 12) -> np.ndarray:
    """An RGGB mosaic of a (H, W, 3) uint8 sRGB-ish picture, linearised (gamma 2.2)."""
    lin = (rgb.astype(np.float64) / 255.0) ** 2.2 * ((1 << bits) - 1)
    h, w, _ = rgb.shape
    m = np.zeros((h, w), np.uint16)
    m[0::2, 0::2] = lin[0::2, 0::2, 0]
    m[0::2, 1::2] = lin[0::2, 1::2, 1]
    m[1::2, 0::2] = lin[1::2, 0::2, 1]
    m[1::2, 1::2] = lin[1::2, 1::2, 2]
    return m


def dng_bytes(
    rgb: np.ndarray,
    *,
    orientation: int = 1,
    preview: Image.Image | None = None,
    make: str = "TestCam",
    model: str = "TestCam R1",
    bits: int = 12,
    mosaic: np.ndarray | None = None,
) -> bytes:
    """A DNG of a synthetic Bayer mosaic (pidng's tags), optionally with a JPEG preview in a
    SubIFD (NewSubfileType 1, as cameras and Adobe's converter embed it). `mosaic`: a ready
    (H, W) uint16 RGGB mosaic to store instead of one made from `rgb`."""
    from pidng.core import DNGTags, Tag
    from pidng.defs import (
        CalibrationIlluminant,
        CFAPattern,
        Compression,
        DNGVersion,
        PhotometricInterpretation,
    )
    from pidng.dng import DNG, dngIFD, dngTag

    if mosaic is None:
        mosaic = bayer_mosaic(rgb, bits)
    h, w = mosaic.shape
    t = DNGTags()
    t.set(Tag.ImageWidth, w)
    t.set(Tag.ImageLength, h)
    t.set(Tag.TileWidth, w)
    t.set(Tag.TileLength, h)
    t.set(Tag.Orientation, orientation)
    t.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    t.set(Tag.SamplesPerPixel, 1)
    t.set(Tag.BitsPerSample, 16)
    t.set(Tag.CFARepeatPatternDim, [2, 2])
    t.set(Tag.CFAPattern, CFAPattern.RGGB)
    t.set(Tag.WhiteLevel, (1 << bits) - 1)
    t.set(Tag.BlackLevel, 0)
    identity = [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]
    t.set(Tag.ColorMatrix1, identity)
    t.set(Tag.CalibrationIlluminant1, CalibrationIlluminant.D65)
    t.set(Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]])
    t.set(Tag.BaselineExposure, [[0, 100]])
    t.set(Tag.Make, make)
    t.set(Tag.Model, model)
    t.set(Tag.DNGVersion, DNGVersion.V1_4)
    t.set(Tag.DNGBackwardVersion, DNGVersion.V1_2)

    dng = DNG()
    dng.ImageDataStrips.append(mosaic.astype("<u2").tobytes())
    main = dngIFD()
    offsets = dngTag(Tag.TileOffsets, [0])
    main.tags += [
        offsets,
        dngTag(Tag.NewSubfileType, [0]),
        dngTag(Tag.TileByteCounts, [len(dng.ImageDataStrips[0])]),
        dngTag(Tag.Compression, [Compression.Uncompressed]),
        dngTag(Tag.Software, "imgfinder tests"),
        *t.list(),
    ]
    preview_offsets = None
    if preview is not None:
        buf = io.BytesIO()
        preview.convert("RGB").save(buf, "JPEG", quality=90)
        jpeg = buf.getvalue()
        dng.ImageDataStrips.append(jpeg)
        sub = dngIFD()
        preview_offsets = dngTag(Tag.StripOffsets, [0])
        sub.tags += [
            dngTag(Tag.NewSubfileType, [1]),
            dngTag(Tag.ImageWidth, [preview.width]),
            dngTag(Tag.ImageLength, [preview.height]),
            dngTag(Tag.BitsPerSample, [8, 8, 8]),
            dngTag(Tag.Compression, [7]),  # JPEG
            dngTag(Tag.PhotometricInterpretation, [6]),  # YCbCr
            dngTag(Tag.SamplesPerPixel, [3]),
            dngTag(Tag.RowsPerStrip, [preview.height]),
            preview_offsets,
            dngTag(Tag.StripByteCounts, [len(jpeg)]),
        ]
        # pidng's SubIFD tag type cannot be constructed (a str/bytes bug); set it up by hand
        sub_tag = dngTag((330, Tag.NewSubfileType[1]), [0])
        sub_tag.subIFD = sub
        main.tags.append(sub_tag)
    dng.IFDs.append(main)
    total = dng.dataLen()
    offsets.setValue([dng.StripOffsets[0]])
    if preview_offsets is not None:
        preview_offsets.setValue([dng.StripOffsets[1]])
    out = bytearray(total)
    dng.setBuffer(out)
    dng.write()
    return bytes(out)


def scene(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A (H, W, 3) uint8 picture with structure: gradients, a bright block and noise."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.zeros((h, w, 3), np.float32)
    rgb[..., 0] = 40 + 180 * xx / w
    rgb[..., 1] = 40 + 180 * yy / h
    rgb[..., 2] = 60 + 60 * np.sin(xx / (w / (3 + seed % 5))) * np.cos(yy / (h / 4))
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    rgb[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(120, 255, size=3)
    rgb += rng.normal(0, 4, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def write_dng(path: Path, size=(768, 512), *, seed=0, preview_size=None, orientation=1) -> Path:
    rgb = scene(size, seed)
    preview = None
    if preview_size is not None:
        preview = Image.fromarray(rgb).resize(preview_size, Image.Resampling.LANCZOS)
    path.write_bytes(dng_bytes(rgb, orientation=orientation, preview=preview))
    return path


# --------------------------------------------------------------------------- HEIC / AVIF / MPO


def write_heic(path: Path, image: Image.Image, exif: Image.Exif | None = None) -> Path:
    import pillow_heif

    pillow_heif.register_heif_opener()
    kw = {"exif": exif.tobytes()} if exif is not None else {}
    image.save(path, "HEIF", quality=80, **kw)
    return path


def write_avif(path: Path, image: Image.Image, exif: Image.Exif | None = None) -> Path:
    kw = {"exif": exif.tobytes()} if exif is not None else {}
    image.save(path, "AVIF", quality=70, **kw)
    return path


MPF_LARGE_THUMBNAIL_FULL_HD = 0x010002


def write_camera_jpeg(
    path: Path,
    image: Image.Image,
    preview_size: tuple[int, int] | None,
    exif: Image.Exif | None = None,
    *,
    mptype: int = MPF_LARGE_THUMBNAIL_FULL_HD,
    quality: int = 90,
) -> Path:
    """A JPEG with an MPF preview as cameras write it: Pillow writes the MPO, then the
    preview's MP entry gets the camera's type ("Large Thumbnail"), not Pillow's "Undefined"."""
    kw = {"exif": exif.tobytes()} if exif is not None else {}
    if preview_size is None:
        image.save(path, "JPEG", quality=quality, **kw)
        return path
    preview = image.resize(preview_size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, "MPO", save_all=True, append_images=[preview], quality=quality, **kw)
    data = bytearray(buf.getvalue())
    # the first frame's size: where its EOI is followed by the preview's SOI
    first_size = data.index(b"\xff\xd9\xff\xd8") + 2
    entry0 = struct.pack("<LL", 0x030000, first_size)
    at = data.index(entry0)
    struct.pack_into("<L", data, at + 16, mptype)
    path.write_bytes(bytes(data))
    return path


# --------------------------------------------------------------------------- huge JPEGs


def _segments(jpeg: bytes) -> tuple[bytes, bytes]:
    """(everything up to and including the SOS header, entropy-coded data up to EOI)."""
    pos = 2
    while True:
        assert jpeg[pos] == 0xFF
        marker = jpeg[pos + 1]
        length = struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
        end = pos + 2 + length
        if marker == 0xDA:  # SOS
            return jpeg[:end], jpeg[end : jpeg.rindex(b"\xff\xd9")]
        pos = end


def write_strip_jpeg(path: Path, width: int, height: int, tile: Image.Image | None = None) -> Path:
    """A width x height baseline JPEG (4:2:0) made of one 16-row strip repeated, written
    without ever holding the image: the strip is encoded once and its entropy-coded data
    repeated as restart intervals (RST0..7), with the frame header's height patched.
    Memory is that of one strip; the file is as large as the picture's entropy needs."""
    if width > 65535 or height > 65535:
        raise ValueError("JPEG sides are limited to 65535")
    if tile is None:
        tile = Image.fromarray(scene((width, 16), seed=3))
    tile = tile.convert("RGB").resize((width, 16))
    buf = io.BytesIO()
    tile.save(buf, "JPEG", quality=75, subsampling="4:2:0", optimize=False)
    header, interval = _segments(buf.getvalue())
    sof = header.index(b"\xff\xc0")
    header = bytearray(header)
    struct.pack_into(">H", header, sof + 5, height)  # SOF0: length(2) precision(1) height(2)
    mcus_per_row = -(-width // 16)
    dri = b"\xff\xdd" + struct.pack(">HH", 4, mcus_per_row)
    sos = header.rindex(b"\xff\xda")
    rows = -(-height // 16)
    with open(path, "wb") as fh:
        fh.write(bytes(header[:sos]) + dri + bytes(header[sos:]))
        for r in range(rows):
            fh.write(interval)
            if r != rows - 1:
                fh.write(bytes((0xFF, 0xD0 + r % 8)))
        fh.write(b"\xff\xd9")
    return path

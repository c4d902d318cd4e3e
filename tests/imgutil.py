"""Test helpers that generate photo-like images with PIL, so no test depends on binary fixtures."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

Color = tuple[int, int, int]
XYZ = tuple[float, float, float]

# D50-adapted colorants (what ICC rXYZ/gXYZ/bXYZ tags hold) of sRGB and Adobe RGB (1998).
SRGB_D50_PRIMARIES: tuple[XYZ, XYZ, XYZ] = (
    (0.4361, 0.2225, 0.0139),
    (0.3851, 0.7169, 0.0971),
    (0.1431, 0.0606, 0.7141),
)
ADOBE_RGB_D50_PRIMARIES: tuple[XYZ, XYZ, XYZ] = (
    (0.6097, 0.3111, 0.0195),
    (0.2053, 0.6257, 0.0609),
    (0.1492, 0.0632, 0.7446),
)
_D50: XYZ = (0.9642, 1.0, 0.8249)


def textured(size: tuple[int, int], color: Color | None = None, seed: int = 0) -> Image.Image:
    """An RGB image with smooth blobs, a gradient and grain, so different seeds look different.

    Flat colours would make every feature extractor (and JPEG) degenerate; this stays cheap
    even at camera resolutions. Without `color` the overall tint is drawn from the seed too.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    if color is None:
        color = tuple(int(c) for c in rng.integers(30, 226, size=3))
    # Low-frequency structure: a coarse random field, upscaled smoothly by PIL.
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    blobs = np.asarray(
        Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC),
        dtype=np.int16,
    )
    gy = np.linspace(-40, 40, height, dtype=np.float32)[:, None]
    gx = np.linspace(-40, 40, width, dtype=np.float32)[None, :]
    gradient = (gx + gy).astype(np.int16)[:, :, None]
    grain = rng.integers(-10, 11, size=(height, width, 1), dtype=np.int16)
    base = np.asarray(color, dtype=np.int16)[None, None, :]
    arr = base // 2 + blobs // 2 + gradient + grain
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def exif_bytes(orientation: int) -> bytes:
    """A minimal EXIF block carrying only the orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def make_jpeg(
    path: str | Path,
    size: tuple[int, int] = (64, 48),
    color: Color | None = None,
    seed: int = 0,
    quality: int = 90,
    *,
    orientation: int | None = None,
    icc_profile: bytes | None = None,
    mode: str = "RGB",
    image: Image.Image | None = None,
) -> Path:
    """Write a textured JPEG (or `image`), optionally with EXIF orientation and an ICC profile."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = image if image is not None else textured(size, color, seed)
    if im.mode != mode:
        im = im.convert(mode)
    kwargs: dict = {"quality": quality}
    if orientation is not None:
        kwargs["exif"] = exif_bytes(orientation)
    if icc_profile is not None:
        kwargs["icc_profile"] = icc_profile
    im.save(path, "JPEG", **kwargs)
    return path


def make_png(
    path: str | Path,
    size: tuple[int, int] = (64, 48),
    color: Color | None = None,
    seed: int = 0,
    *,
    mode: str = "RGB",
    icc_profile: bytes | None = None,
    image: Image.Image | None = None,
) -> Path:
    """Write a textured PNG (or `image`) converted to `mode` (RGBA gets a left-to-right fade)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = image if image is not None else textured(size, color, seed)
    if image is None and mode in ("RGBA", "LA"):
        alpha = Image.linear_gradient("L").rotate(90).resize(im.size)
        im = im.convert("RGBA")
        im.putalpha(alpha)
    if im.mode != mode:
        im = im.convert(mode)
    kwargs: dict = {}
    if icc_profile is not None:
        kwargs["icc_profile"] = icc_profile
    im.save(path, "PNG", **kwargs)
    return path


def make_image_set(
    directory: str | Path,
    n: int,
    *,
    size: tuple[int, int] = (64, 48),
    ext: str = ".jpg",
    prefix: str = "img",
    seed: int = 0,
) -> list[Path]:
    """Write `n` distinct textured images (seeds seed..seed+n-1) and return their paths."""
    directory = Path(directory)
    paths = []
    for i in range(n):
        path = directory / f"{prefix}_{i:04d}{ext}"
        color = ((37 * i) % 256, (91 * i + 60) % 256, (151 * i + 120) % 256)
        if ext.lower() in (".jpg", ".jpeg"):
            make_jpeg(path, size, color, seed + i)
        elif ext.lower() == ".png":
            make_png(path, size, color, seed + i)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            textured(size, color, seed + i).save(path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- ICC profiles


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(xyz: XYZ) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15f16(v) for v in xyz)


def _curve_tag(gamma: float) -> bytes:
    return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (
        b"desc"
        + b"\0" * 4
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">II", 0, 0)  # no Unicode description
        + struct.pack(">HB", 0, 0)  # no ScriptCode description
        + b"\0" * 67
    )


def make_rgb_icc_profile(
    primaries: Sequence[XYZ] = ADOBE_RGB_D50_PRIMARIES,
    gamma: float = 2.2,
    description: str = "imgfinder test RGB",
) -> bytes:
    """Build a minimal ICC v2 matrix/TRC display profile (ImageCms can only create sRGB/LAB/XYZ).

    Lets tests embed a non-sRGB RGB profile whose effect is predictable, e.g. swapped primaries.
    """
    tags = [
        (b"desc", _desc_tag(description)),
        (b"wtpt", _xyz_tag(_D50)),
        (b"rXYZ", _xyz_tag(primaries[0])),
        (b"gXYZ", _xyz_tag(primaries[1])),
        (b"bXYZ", _xyz_tag(primaries[2])),
        (b"rTRC", _curve_tag(gamma)),
        (b"gTRC", _curve_tag(gamma)),
        (b"bTRC", _curve_tag(gamma)),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    body = b""
    for signature, data in tags:
        padded = data + b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += padded
    total = 128 + table_size + len(body)
    header = (
        struct.pack(">I", total)
        + b"\0" * 4  # preferred CMM
        + struct.pack(">I", 0x02100000)  # version 2.1
        + b"mntr"
        + b"RGB "
        + b"XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\0" * 4  # platform
        + b"\0" * 4  # flags
        + b"\0" * 8  # manufacturer, model
        + b"\0" * 8  # attributes
        + struct.pack(">I", 0)  # perceptual intent
        + b"".join(_s15f16(v) for v in _D50)
        + b"\0" * 4  # creator
        + b"\0" * 16  # profile id
        + b"\0" * 28
    )
    assert len(header) == 128
    return header + table + body


def swapped_red_green_icc_profile() -> bytes:
    """An RGB profile whose 'red' channel is sRGB's green: pure red pixels must come out green."""
    red, green, blue = SRGB_D50_PRIMARIES
    return make_rgb_icc_profile((green, red, blue), gamma=2.2, description="swapped red green")


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height: a decompression bomb that costs nothing."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\0" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def permissions_enforced(directory: str | Path) -> bool:
    """Whether chmod 000 really stops this process (not for root or CAP_DAC_OVERRIDE, nor Windows)."""
    probe = Path(directory) / ".permission_probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        with open(probe, "rb"):
            return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o644)
        probe.unlink()

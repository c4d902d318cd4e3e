"""Decoding must turn every odd real-world file into an upright sRGB RGB image or a DecodeError."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

from imgfinder.core import decode
from imgfinder.core.decode import (
    IMAGE_EXTENSIONS,
    content_hash,
    image_info,
    open_image,
    read_file,
    sniff_format,
)
from imgfinder.errors import DecodeError
from tests.imgutil import (
    exif_bytes,
    make_image_set,
    make_jpeg,
    make_png,
    make_rgb_icc_profile,
    permissions_enforced,
    png_claiming_size,
    swapped_red_green_icc_profile,
    textured,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def close(actual, expected, tol: int = 6) -> bool:
    return all(abs(int(a) - int(e)) <= tol for a, e in zip(actual, expected, strict=True))


def two_halves(size=(60, 40), left=RED, right=BLUE) -> Image.Image:
    """Left half one colour, right half another: shows where rotations and flips went."""
    im = Image.new("RGB", size, right)
    im.paste(left, (0, 0, size[0] // 2, size[1]))
    return im


def check_rgb(im: Image.Image, size) -> None:
    assert im.mode == "RGB"
    assert im.size == tuple(size)
    im.getpixel((0, 0))  # fully loaded: pixel access works without a file behind it


# --------------------------------------------------------------------------- constants & helpers


def test_extensions_cover_common_photo_formats():
    for ext in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"):
        assert ext in IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
    assert ".txt" not in IMAGE_EXTENSIONS


@pytest.mark.parametrize(
    ("fmt", "mode", "expected"),
    [
        ("JPEG", "RGB", "JPEG"),
        ("PNG", "RGB", "PNG"),
        ("WEBP", "RGB", "WEBP"),
        ("TIFF", "RGB", "TIFF"),
        ("BMP", "RGB", "BMP"),
        ("GIF", "P", "GIF"),
        ("PPM", "RGB", "PPM"),
        ("PSD", None, None),
    ],
)
def test_sniff_format_from_magic_bytes(fmt, mode, expected):
    if fmt == "PSD":
        assert sniff_format(b"8BPS\x00\x01" + b"\0" * 26) == "PSD"
        return
    data = encode(Image.new(mode, (8, 8)), fmt)
    assert sniff_format(data[:32]) == expected


@pytest.mark.parametrize(
    "head",
    [b"", b"hello world, this is plain text", b"BM is also how text can start....", b"%PDF-1.7"],
)
def test_sniff_format_rejects_non_images(head):
    assert sniff_format(head) is None


def test_sniff_format_big_endian_tiff():
    assert sniff_format(b"MM\x00*\x00\x00\x00\x08") == "TIFF"


def test_read_file_and_content_hash(tmp_path):
    path = make_jpeg(tmp_path / "a.jpg", seed=1)
    data = read_file(path)
    assert data == path.read_bytes()
    digest = content_hash(data)
    assert digest == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert len(digest) == 32
    assert content_hash(data) == digest
    assert content_hash(data + b"\0") != digest


def test_read_file_errors(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="file is empty"):
        read_file(empty)
    with pytest.raises(DecodeError, match="file not found") as info:
        read_file(tmp_path / "missing.jpg")
    assert info.value.path == str(tmp_path / "missing.jpg")
    with pytest.raises(DecodeError):
        read_file(tmp_path)


def test_textured_images_differ_by_seed_and_repeat_with_same_seed():
    a, b = textured((32, 24), seed=1), textured((32, 24), seed=2)
    assert np.asarray(a).tolist() == np.asarray(textured((32, 24), seed=1)).tolist()
    assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).mean() > 10


# --------------------------------------------------------------------------- modes


def test_rgb_jpeg_path(tmp_path):
    path = make_jpeg(tmp_path / "rgb.jpg", size=(64, 48), seed=3)
    check_rgb(open_image(path), (64, 48))
    check_rgb(open_image(str(path)), (64, 48))


def test_palette_png(tmp_path):
    src = textured((40, 30), seed=5).convert("P", palette=Image.Palette.ADAPTIVE)
    path = tmp_path / "p.png"
    src.save(path)
    out = open_image(path)
    check_rgb(out, (40, 30))
    assert out.getpixel((3, 4)) == src.convert("RGB").getpixel((3, 4))


def test_palette_with_transparency_composites_on_white(tmp_path):
    src = Image.new("P", (20, 10), 0)
    src.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    src.paste(1, (10, 0, 20, 10))
    path = tmp_path / "pt.png"
    src.save(path, transparency=0)  # palette index 0 (black) is fully transparent
    out = open_image(path)
    check_rgb(out, (20, 10))
    assert out.getpixel((2, 5)) == WHITE
    assert out.getpixel((15, 5)) == RED


def test_palette_gif_with_transparency(tmp_path):
    src = Image.new("P", (20, 10), 0)
    src.putpalette([0, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    src.paste(1, (0, 0, 10, 10))
    path = tmp_path / "t.gif"
    src.save(path, transparency=0)
    out = open_image(path)
    assert out.getpixel((2, 5)) == BLUE
    assert out.getpixel((15, 5)) == WHITE


def test_rgba_png_on_white(tmp_path):
    src = Image.new("RGBA", (20, 10), (255, 0, 0, 0))
    src.paste((0, 0, 255, 255), (10, 0, 20, 10))
    path = tmp_path / "rgba.png"
    src.save(path)
    out = open_image(path)
    check_rgb(out, (20, 10))
    assert out.getpixel((2, 5)) == WHITE  # transparent red must not show as red or black
    assert out.getpixel((15, 5)) == BLUE


def test_half_transparent_blends_with_white():
    src = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert close(open_image(src).getpixel((0, 0)), (127, 127, 127), tol=2)


def test_premultiplied_rgba_input():
    src = Image.new("RGBA", (4, 4), (0, 0, 255, 255)).convert("RGBa")
    assert open_image(src).getpixel((0, 0)) == BLUE


def test_la_png_on_white(tmp_path):
    src = Image.new("LA", (20, 10), (0, 0))
    src.paste((50, 255), (10, 0, 20, 10))
    path = tmp_path / "la.png"
    src.save(path)
    out = open_image(path)
    check_rgb(out, (20, 10))
    assert out.getpixel((2, 5)) == WHITE
    assert out.getpixel((15, 5)) == (50, 50, 50)


def test_grayscale_png_with_transparent_value(tmp_path):
    src = Image.new("L", (20, 10), 0)
    src.paste(200, (10, 0, 20, 10))
    path = tmp_path / "lt.png"
    src.save(path, transparency=0)
    out = open_image(path)
    assert out.getpixel((2, 5)) == WHITE
    assert out.getpixel((15, 5)) == (200, 200, 200)


def test_cmyk_jpeg(tmp_path):
    # Pillow writes CMYK JPEGs Adobe-style (inverted); decoding must undo that, not show a negative.
    src = Image.new("CMYK", (32, 16), (255, 0, 0, 0))  # pure cyan
    src.paste((0, 0, 0, 0), (16, 0, 32, 16))  # paper white
    path = tmp_path / "cmyk.jpg"
    src.save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = open_image(path)
    check_rgb(out, (32, 16))
    assert close(out.getpixel((4, 8)), (0, 255, 255), tol=10)
    assert close(out.getpixel((28, 8)), WHITE, tol=10)


def test_cmyk_jpeg_draft(tmp_path):
    src = Image.new("CMYK", (800, 600), (0, 255, 0, 0))  # magenta
    path = tmp_path / "cmyk_big.jpg"
    src.save(path, quality=95)
    out = open_image(path, min_size=50)
    assert min(out.size) >= 50 and out.width < 800
    assert close(out.getpixel((10, 10)), (255, 0, 255), tol=10)


def test_i16_png_scaled_by_actual_range(tmp_path):
    arr = np.linspace(1000, 3000, 64 * 16, dtype=np.uint16).reshape(16, 64)
    src = Image.fromarray(arr)
    path = tmp_path / "i16.png"
    src.save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = open_image(path)
    check_rgb(out, (64, 16))
    gray = np.asarray(out.convert("L"))
    assert gray.min() == 0 and gray.max() == 255  # not a near-black image
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((63, 15)) == WHITE


def test_i16_big_endian_tiff(tmp_path):
    arr = np.linspace(0, 40000, 32 * 8).reshape(8, 32).astype(">u2")
    src = Image.frombytes("I;16B", (32, 8), arr.tobytes())
    path = tmp_path / "i16b.tif"
    src.save(path)
    out = open_image(path)
    check_rgb(out, (32, 8))
    assert out.getpixel((31, 7)) == WHITE and out.getpixel((0, 0)) == (0, 0, 0)


def test_int32_tiff(tmp_path):
    arr = np.linspace(-5000, 100000, 32 * 8).reshape(8, 32).astype(np.int32)
    path = tmp_path / "i.tif"
    Image.fromarray(arr, "I").save(path)
    assert Image.open(path).mode == "I"
    out = open_image(path)
    check_rgb(out, (32, 8))
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((31, 7)) == WHITE


def test_float_tiff_with_nan(tmp_path):
    arr = np.linspace(0.0, 1.0, 32 * 8, dtype=np.float32).reshape(8, 32)
    arr[0, 5] = np.nan
    path = tmp_path / "f.tif"
    Image.fromarray(arr, "F").save(path)
    assert Image.open(path).mode == "F"
    out = open_image(path)
    check_rgb(out, (32, 8))
    assert out.getpixel((31, 7)) == WHITE
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((5, 0)) == (0, 0, 0)
    mid = out.getpixel((16, 4))[0]
    assert 100 < mid < 160


def test_constant_float_image_does_not_divide_by_zero():
    out = open_image(Image.new("F", (4, 4), 3.0))
    assert out.getpixel((0, 0)) == (3, 3, 3)


def test_bilevel_png(tmp_path):
    src = Image.new("1", (16, 8), 0)
    src.paste(1, (8, 0, 16, 8))
    path = tmp_path / "bw.png"
    src.save(path)
    out = open_image(path)
    check_rgb(out, (16, 8))
    assert out.getpixel((2, 2)) == (0, 0, 0) and out.getpixel((12, 2)) == WHITE


def test_grayscale_jpeg(tmp_path):
    path = make_jpeg(tmp_path / "l.jpg", size=(40, 30), mode="L")
    assert Image.open(path).mode == "L"
    out = open_image(path)
    check_rgb(out, (40, 30))
    r, g, b = out.getpixel((5, 5))
    assert r == g == b


@pytest.mark.parametrize("mode", ["YCbCr", "HSV", "LAB"])
def test_exotic_modes_from_pil(mode):
    src = Image.new("RGB", (8, 8), (200, 40, 40))
    if mode == "LAB":
        to_lab = ImageCms.buildTransform(
            ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
        )
        converted = to_lab.apply(src)
    else:
        converted = src.convert(mode)
    out = open_image(converted)
    check_rgb(out, (8, 8))
    assert close(out.getpixel((0, 0)), (200, 40, 40), tol=8)


def test_lab_tiff(tmp_path):
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    path = tmp_path / "lab.tif"
    to_lab.apply(Image.new("RGB", (8, 8), (30, 90, 200))).save(path)
    assert Image.open(path).mode == "LAB"
    assert close(open_image(path).getpixel((1, 1)), (30, 90, 200), tol=8)


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF", "BMP", "GIF", "PPM"])
def test_other_formats(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    textured((30, 20), seed=9).save(path, fmt)
    check_rgb(open_image(path), (30, 20))


def test_unconvertible_mode_is_a_decode_error(monkeypatch):
    def refuse(im, icc):
        raise ValueError(f"conversion from {im.mode} to RGB not supported")

    monkeypatch.setattr(decode, "_to_rgb", refuse)
    with pytest.raises(DecodeError, match="not supported"):
        open_image(Image.new("L", (2, 2)))


def test_unexpected_plugin_errors_become_decode_errors(monkeypatch):
    def explode(data, *args, **kwargs):
        raise IndexError("plugin bug")

    monkeypatch.setattr(decode, "_open_lazy", explode)
    with pytest.raises(DecodeError, match="plugin bug"):
        open_image(b"\xff\xd8\xff\xe0 whatever")


# --------------------------------------------------------------------------- orientation


@pytest.mark.parametrize(
    ("orientation", "size", "top_left", "bottom_right"),
    [
        (1, (60, 40), RED, BLUE),
        (2, (60, 40), BLUE, RED),  # mirrored
        (3, (60, 40), BLUE, RED),  # 180
        (6, (40, 60), RED, BLUE),  # 90 CW: the left half ends up on top
        (8, (40, 60), BLUE, RED),  # 90 CCW: the left half ends up at the bottom
    ],
)
def test_exif_orientation(tmp_path, orientation, size, top_left, bottom_right):
    path = make_jpeg(tmp_path / "o.jpg", image=two_halves(), orientation=orientation, quality=95)
    out = open_image(path)
    check_rgb(out, size)
    assert close(out.getpixel((3, 3)), top_left, tol=30)
    assert close(out.getpixel((size[0] - 4, size[1] - 4)), bottom_right, tol=30)


def test_tiff_orientation_tag(tmp_path):
    path = tmp_path / "o.tif"
    two_halves().save(path, tiffinfo={0x0112: 6})
    out = open_image(path)
    assert out.size == (40, 60)
    assert out.getpixel((20, 3)) == RED and out.getpixel((20, 56)) == BLUE


def test_mpo_first_frame_with_draft(tmp_path):
    # Many camera JPEGs are really MPO (a photo plus previews); they must get DCT scaling too.
    frames = [two_halves((800, 600)), Image.new("RGB", (800, 600), GREEN)]
    path = tmp_path / "cam.jpg"
    frames[0].save(path, "MPO", save_all=True, append_images=frames[1:], quality=90)
    assert Image.open(path).format == "MPO"
    out = open_image(path, min_size=64)
    assert 64 <= out.height < 128
    assert close(out.getpixel((5, 5)), RED, tol=30)


def test_exif_orientation_6_pixels_exactly_rotated(tmp_path):
    src = textured((48, 32), seed=11)
    path = tmp_path / "o6.png"
    src.save(path, exif=exif_bytes(6))  # PNG is lossless: compare every pixel
    out = open_image(path)
    assert out.size == (32, 48)
    expected = src.transpose(Image.Transpose.ROTATE_270)
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_orientation_applied_after_draft(tmp_path):
    path = make_jpeg(
        tmp_path / "big_o6.jpg", image=two_halves((1600, 1000)), orientation=6, quality=90
    )
    out = open_image(path, min_size=100)
    assert out.width < out.height  # portrait after rotation
    assert min(out.size) >= 100 and max(out.size) < 1600
    assert close(out.getpixel((out.width // 2, 5)), RED, tol=30)
    assert close(out.getpixel((out.width // 2, out.height - 5)), BLUE, tol=30)


def test_image_info_reports_upright_size(tmp_path):
    path = make_jpeg(tmp_path / "o.jpg", size=(60, 40), orientation=6)
    assert image_info(path) == {"width": 40, "height": 60, "format": "JPEG", "mode": "RGB"}
    png = make_png(tmp_path / "p.png", size=(30, 20), mode="RGBA")
    assert image_info(png) == {"width": 30, "height": 20, "format": "PNG", "mode": "RGBA"}
    cmyk = tmp_path / "c.jpg"
    Image.new("CMYK", (10, 5)).save(cmyk)
    assert image_info(cmyk.read_bytes())["mode"] == "CMYK"
    assert image_info(Image.new("L", (7, 3)))["width"] == 7


def test_image_info_errors(tmp_path):
    empty = tmp_path / "e.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty"):
        image_info(empty)
    text = tmp_path / "t.jpg"
    text.write_text("not a photo")
    with pytest.raises(DecodeError, match="not an image"):
        image_info(text)
    with pytest.raises(DecodeError, match="not found"):
        image_info(tmp_path / "missing.png")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_exif_is_ignored(tmp_path):
    path = tmp_path / "badexif.jpg"
    textured((20, 10)).save(path, exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f garbage")
    check_rgb(open_image(path), (20, 10))


# --------------------------------------------------------------------------- colour management


def test_icc_profile_is_applied(tmp_path):
    # A profile whose red primary is sRGB's green: honouring it turns pure red into green.
    path = tmp_path / "swapped.png"
    Image.new("RGB", (8, 8), RED).save(path, icc_profile=swapped_red_green_icc_profile())
    out = open_image(path)
    check_rgb(out, (8, 8))
    assert close(out.getpixel((0, 0)), GREEN, tol=3)
    assert "icc_profile" not in out.info


def test_adobe_rgb_like_profile_in_jpeg(tmp_path):
    profile = make_rgb_icc_profile(description="Adobe RGB like")
    src = Image.new("RGB", (16, 16), (200, 60, 60))
    plain = make_jpeg(tmp_path / "plain.jpg", image=src, quality=95)
    tagged = make_jpeg(tmp_path / "adobe.jpg", image=src, quality=95, icc_profile=profile)
    a, b = open_image(plain).getpixel((8, 8)), open_image(tagged).getpixel((8, 8))
    assert b[0] > a[0] + 10  # a wider-gamut red becomes more saturated in sRGB
    assert open_image(tagged).mode == "RGB"


def test_srgb_profile_keeps_pixels(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "srgb.png"
    Image.new("RGB", (4, 4), (12, 130, 250)).save(path, icc_profile=srgb)
    assert open_image(path).getpixel((0, 0)) == (12, 130, 250)


def test_mismatched_and_corrupt_profiles_are_ignored(tmp_path):
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    a = make_jpeg(tmp_path / "lab_on_rgb.jpg", size=(16, 12), icc_profile=lab)
    check_rgb(open_image(a), (16, 12))
    b = make_jpeg(tmp_path / "junk.jpg", size=(16, 12), icc_profile=b"\x00" * 200)
    check_rgb(open_image(b), (16, 12))


def test_icc_profile_with_alpha(tmp_path):
    src = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    src.paste((255, 0, 0, 0), (0, 0, 4, 8))
    path = tmp_path / "swapped_rgba.png"
    src.save(path, icc_profile=swapped_red_green_icc_profile())
    out = open_image(path)
    assert out.getpixel((1, 1)) == WHITE
    assert close(out.getpixel((6, 6)), GREEN, tol=3)


def test_rgb_profile_on_grayscale_image_is_ignored(tmp_path):
    # A profile for the wrong colour space cannot be applied; the photo must still decode.
    path = tmp_path / "l_with_rgb_profile.png"
    Image.new("L", (4, 4), 90).save(path, icc_profile=swapped_red_green_icc_profile())
    assert open_image(path).getpixel((0, 0)) == (90, 90, 90)


# --------------------------------------------------------------------------- draft / min_size


def test_draft_decoding_of_large_jpeg(tmp_path):
    path = make_jpeg(tmp_path / "large.jpg", size=(4000, 3000), seed=2, quality=85)
    out = open_image(path, min_size=224)
    check_rgb(out, out.size)
    assert min(out.size) >= 224
    assert min(out.size) < 2 * 224  # just above min_size, not merely "smaller"
    assert out.width * out.height <= 4000 * 3000 / 16
    assert abs(out.width / out.height - 4 / 3) < 0.02
    full = open_image(path)
    assert full.size == (4000, 3000)


@pytest.mark.parametrize(
    ("size", "min_size"),
    [
        ((3000, 225), 224),
        ((225, 3000), 224),
        ((1000, 1000), 224),
        ((2000, 1500), 1),
        ((300, 200), 64),
    ],
)
def test_min_size_keeps_both_sides(tmp_path, size, min_size):
    path = make_jpeg(tmp_path / "s.jpg", size=size, seed=1)
    out = open_image(path, min_size=min_size)
    assert out.width >= min_size and out.height >= min_size
    png = make_png(tmp_path / "s.png", size=size, seed=1)
    out = open_image(png, min_size=min_size)
    assert out.width >= min_size and out.height >= min_size


def test_min_size_reduces_non_jpeg(tmp_path):
    path = make_png(tmp_path / "big.png", size=(1000, 800), seed=4)
    out = open_image(path, min_size=100)
    assert out.size == (125, 100)


def test_min_size_never_upscales(tmp_path):
    path = make_jpeg(tmp_path / "small.jpg", size=(50, 40))
    assert open_image(path, min_size=224).size == (50, 40)


def test_min_size_must_be_positive():
    with pytest.raises(ValueError):
        open_image(Image.new("RGB", (4, 4)), min_size=0)


def test_draft_matches_full_decode_roughly(tmp_path):
    path = make_jpeg(tmp_path / "cmp.jpg", size=(1600, 1200), seed=8)
    small = open_image(path, min_size=100)
    ref = open_image(path).resize(small.size, Image.Resampling.BOX)
    diff = np.abs(np.asarray(small, dtype=int) - np.asarray(ref, dtype=int)).mean()
    assert diff < 8


# --------------------------------------------------------------------------- failures


def test_truncated_jpeg(tmp_path):
    path = make_jpeg(tmp_path / "full.jpg", size=(200, 150), seed=1)
    data = path.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated") as info:
        open_image(cut)
    assert info.value.path == str(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png(tmp_path):
    data = make_png(tmp_path / "full.png", size=(200, 150), seed=1).read_bytes()
    with pytest.raises(DecodeError, match="truncated"):
        open_image(data[: len(data) // 2], path_hint="cut.png")


def test_corrupted_png_data(tmp_path):
    data = bytearray(make_png(tmp_path / "full.png", size=(100, 80), seed=1).read_bytes())
    data[150:170] = b"x" * 20
    with pytest.raises(DecodeError) as info:
        open_image(bytes(data))
    assert info.value.reason


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.jpg"
    path.write_bytes(b"")
    with pytest.raises(DecodeError, match="file is empty"):
        open_image(path)
    with pytest.raises(DecodeError, match="file is empty"):
        open_image(b"")


def test_text_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: milk, eggs\n" * 10)
    with pytest.raises(DecodeError, match="not an image") as info:
        open_image(path)
    assert str(path) in str(info.value)


def test_png_named_jpg_decodes(tmp_path):
    path = make_png(tmp_path / "actually_png.jpg", size=(33, 22), seed=2)
    check_rgb(open_image(path), (33, 22))
    assert open_image(path, min_size=8).size == (17, 11)
    assert image_info(path)["format"] == "PNG"


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DecodeError, match="not found"):
        open_image(tmp_path / "nope.jpg")
    with pytest.raises(DecodeError):
        open_image(tmp_path)


def test_path_hint_names_the_file_in_errors(tmp_path):
    with pytest.raises(DecodeError) as info:
        open_image(b"garbage bytes", path_hint="/photos/x.jpg")
    assert info.value.path == "/photos/x.jpg"
    with pytest.raises(DecodeError) as info:
        open_image(tmp_path / "gone.jpg", path_hint="shown.jpg")
    assert info.value.path == "shown.jpg" and info.value.reason == "file not found"


def test_unreadable_file(tmp_path):
    if not permissions_enforced(tmp_path):
        pytest.skip("chmod 000 does not stop this user (root?)")
    path = make_jpeg(tmp_path / "locked.jpg")
    path.chmod(0)
    try:
        with pytest.raises(DecodeError, match="permission denied"):
            open_image(path)
        with pytest.raises(DecodeError, match="permission denied"):
            read_file(path)
    finally:
        path.chmod(0o644)


def test_permission_error_reason_without_chmod(tmp_path, monkeypatch):
    # Runs even as root (where chmod 000 does not stop reads): the mapping is what matters.
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(decode, "open", denied, raising=False)
    with pytest.raises(DecodeError, match="permission denied"):
        open_image(tmp_path / "x.jpg")
    with pytest.raises(DecodeError, match="permission denied"):
        image_info(tmp_path / "x.jpg")


def test_decompression_bomb_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(50000, 50000))
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(DecodeError, match="image too large") as info:
        open_image(path)
    assert "2500000000" in info.value.reason
    with pytest.raises(DecodeError, match="image too large"):
        image_info(path)
    assert Image.MAX_IMAGE_PIXELS == limit  # the guard is left exactly as Pillow set it


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(40, 40), (100, 100)])  # warning band (1x-2x) and error band
def test_decompression_bomb_limit(tmp_path, monkeypatch, size):
    path = make_png(tmp_path / "b.png", size=size)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DecodeError, match="image too large"):
        open_image(path)
    with pytest.raises(DecodeError, match="image too large"):
        open_image(path.read_bytes(), min_size=8)


def test_decompression_bomb_warning_as_error(tmp_path, monkeypatch):
    path = make_png(tmp_path / "b.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DecodeError, match="image too large"):
            open_image(path)


# --------------------------------------------------------------------------- inputs & frames


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 10), c) for c in (RED, GREEN, BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    out = open_image(path)
    check_rgb(out, (20, 10))
    assert close(out.getpixel((5, 5)), RED, tol=10)


def test_animated_webp_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 10), c) for c in (BLUE, RED)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    assert close(open_image(path).getpixel((5, 5)), BLUE, tol=10)


def test_bytes_inputs(tmp_path):
    data = make_jpeg(tmp_path / "b.jpg", size=(40, 30), seed=6).read_bytes()
    for source in (data, bytearray(data), memoryview(data)):
        check_rgb(open_image(source), (40, 30))
    assert open_image(data, min_size=10).size == (20, 15)


def test_pil_input_is_not_modified():
    src = Image.new("RGBA", (10, 10), (1, 2, 3, 0))
    out = open_image(src)
    assert out is not src and src.mode == "RGBA" and src.getpixel((0, 0)) == (1, 2, 3, 0)
    rgb = Image.new("RGB", (10, 10), (9, 8, 7))
    out = open_image(rgb)
    assert out is not rgb
    out.putpixel((0, 0), (0, 0, 0))
    assert rgb.getpixel((0, 0)) == (9, 8, 7)


def test_pil_input_with_min_size():
    out = open_image(textured((800, 600)), min_size=100)
    assert out.size == (134, 100)


def test_file_handles_are_closed(tmp_path):
    paths = make_image_set(tmp_path, 5, size=(20, 20))
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        pytest.skip("needs /proc")
    before = len(os.listdir(fd_dir))
    for path in paths:
        open_image(path)
        image_info(path)
    (tmp_path / "bad.jpg").write_text("nope")
    for _ in range(3):
        with pytest.raises(DecodeError):
            open_image(tmp_path / "bad.jpg")
        with pytest.raises(DecodeError):
            image_info(tmp_path / "bad.jpg")
    assert len(os.listdir(fd_dir)) <= before


def test_concurrent_decoding_matches_serial(tmp_path):
    profile = swapped_red_green_icc_profile()
    paths = []
    for i in range(12):
        path = tmp_path / f"c{i}.jpg"
        make_jpeg(path, size=(300, 200), seed=i, orientation=(i % 8) + 1, icc_profile=profile)
        paths.append(path)
    serial = [np.asarray(open_image(p, min_size=64)) for p in paths]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda p: np.asarray(open_image(p, min_size=64)), paths * 2))
    for i, arr in enumerate(parallel):
        assert np.array_equal(arr, serial[i % len(paths)])


def test_module_leaves_pillow_globals_alone():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 0
    assert decode.IMAGE_EXTENSIONS is IMAGE_EXTENSIONS


def test_decoded_image_is_not_rotated_twice(tmp_path):
    """open_image's output fed back in (e.g. a pasted query) keeps its upright shape."""
    from imgfinder.core.decode import open_image
    from tests.imgutil import make_jpeg

    path = make_jpeg(tmp_path / "rot.jpg", size=(64, 48), orientation=6)
    once = open_image(path)
    assert once.size == (48, 64)
    assert open_image(once).size == (48, 64)

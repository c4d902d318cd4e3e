"""jpegfast: plain JPEGs decoded by OpenCV give decode.decode's pixels; anything else is left
to decode.decode (None)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgfinder.core import decode, jpegfast
from imgfinder.core.dupes import sigindex
from tests.imgutil import make_jpeg, make_rgb_icc_profile, textured


def _same_as_decode(data: bytes, min_size: int) -> None:
    got = jpegfast.small_jpeg(data, min_size)
    assert got is not None
    ref = decode.decode(data, min_size=min_size)
    img, w, h = got
    assert (w, h) == (ref.width, ref.height)
    assert img.mode == "RGB" and img.size == ref.image.size
    assert np.array_equal(np.asarray(img), np.asarray(ref.image))


@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 4, 5, 6, 7, 8])
def test_pixels_and_size_are_decodes_under_every_orientation(tmp_path, orientation):
    path = make_jpeg(tmp_path / "o.jpg", size=(700, 460), seed=2, orientation=orientation)
    data = path.read_bytes()
    for min_size in (32, 64, 100, 192, 460, 1000):  # DCT scales 8, 4, 2, 1 and too small
        _same_as_decode(data, min_size)


def test_grey_and_odd_sizes_and_subsampling(tmp_path):
    for k, (size, mode, sub) in enumerate(
        [((333, 257), "L", None), ((257, 333), "RGB", 0), ((91, 67), "RGB", 2), ((8, 8), "L", None)]
    ):
        buf = io.BytesIO()
        im = textured(size, seed=k).convert(mode)
        im.save(buf, "JPEG", quality=85, **({} if sub is None else {"subsampling": sub}))
        for min_size in (16, 64):
            _same_as_decode(buf.getvalue(), min_size)


def _jpeg(**kw) -> bytes:
    buf = io.BytesIO()
    textured((300, 200), seed=5).convert(kw.pop("mode", "RGB")).save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_left_to_decode():
    plain = _jpeg()
    assert jpegfast.small_jpeg(plain, 64) is not None
    png = io.BytesIO()
    textured((300, 200)).save(png, "PNG")
    left = {
        "png": png.getvalue(),
        "progressive": _jpeg(progressive=True),
        "icc profile": _jpeg(icc_profile=make_rgb_icc_profile()),
        "cmyk": _jpeg(mode="CMYK"),
        "truncated": plain[: len(plain) // 2],
        "no eoi": plain[:-2],
        "not an image": b"\xff\xd8" + b"garbage" * 20 + b"\xff\xd9",
        "empty": b"",
    }
    for name, data in left.items():
        assert jpegfast.small_jpeg(data, 64) is None, name
    # a file with an MPF preview: decode.decode decodes the smaller preview instead
    frames = [textured((800, 600), seed=1), textured((800, 600), seed=2)]
    mpo = io.BytesIO()
    frames[0].save(mpo, "MPO", save_all=True, append_images=frames[1:], quality=90)
    assert jpegfast.small_jpeg(mpo.getvalue(), 64) is None


def test_malformed_exif_is_left_to_decode(tmp_path):
    data = make_jpeg(tmp_path / "o.jpg", size=(120, 80), orientation=6).read_bytes()
    at = data.index(b"Exif\0\0") + 6
    broken = data[:at] + b"XX*\0" + data[at + 4 :]  # not a TIFF byte order
    assert jpegfast.jpeg_header(data) == (120, 80, 6)
    assert jpegfast.jpeg_header(broken) is None


def test_signing_a_truncated_jpeg_fails_with_decodes_reason(tmp_path):
    path = make_jpeg(tmp_path / "t.jpg", size=(300, 200))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (record, sig) = sigindex.sign_file(str(path))
    assert sig is None and record[6] == "failed" and "truncated" in record[7]
    ok = make_jpeg(tmp_path / "ok.jpg", size=(300, 200))
    (record, sig) = sigindex.sign_file(str(ok))
    assert record[6] == sigindex.SIGNED and (record[4], record[5]) == (300, 200)
    ref = sigindex.signature.signature_of(decode.open_image(ok, min_size=64))
    assert np.array_equal(sig, ref)
    assert Image.open(ok).size == (300, 200)  # the photo itself is untouched

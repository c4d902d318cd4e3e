"""Photo-like test scenes (shapes with edges) for the duplicate tests, and checks of the signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from imgfinder.core.dupes import signature, verify
from imgfinder.core.dupes.grouping import DEFAULT_THRESHOLDS
from imgfinder.core.dupes.pairs import SIG_GATE


def scene(seed: int, size: tuple[int, int] = (192, 128)) -> Image.Image:
    """A non-square 'photo' with a gradient, overlapping shapes and a little noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    top, bottom = rng.integers(40, 220, 3), rng.integers(20, 200, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = Image.fromarray(((top * (1 - t) + bottom * t) * np.ones((1, w, 1))).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.integers(2):
            d.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            d.rectangle((x0, y0, x1, y1), fill=colour)
    noise = rng.normal(0, 4, (h, w, 1))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def crop(im: Image.Image, fraction: float) -> Image.Image:
    dx, dy = round(im.width * fraction / 2), round(im.height * fraction / 2)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


COPIES = {
    "resize50": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "crop5": lambda im: crop(im, 0.05),
    "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "mirror": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "bright20": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
}


def save(im: Image.Image, path: Path, **opts) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **opts)
    return path


def _scores(a: Image.Image, b: Image.Image) -> tuple[float, float]:
    sa, sb = signature.signature_of(a), signature.signature_of(b)
    s, o = signature.similarity(sa[None], sb[None])
    wa = signature.grey_square(a, verify.WORK).astype(np.float32)
    wb = signature.grey_square(b, verify.WORK).astype(np.float32)
    return float(s[0]), verify.aligned_score(wa, wb, int(o[0]))


def test_signature_is_exact_under_the_eight_orientations():
    im = scene(1, (signature.GRID, signature.GRID))  # no resampling: orientations are exact
    base = signature.signature_of(im)
    ops = [None, *Image.Transpose][:8]
    for op in ops:
        other = signature.signature_of(im if op is None else im.transpose(op))
        s, o = signature.similarity(other[None], base[None])
        assert s[0] == pytest.approx(1.0, abs=1e-4)
        g = signature.grey_square(im)
        np.testing.assert_allclose(
            signature.orient(g, int(o[0])),
            signature.grey_square(im if op is None else im.transpose(op)),
        )
        np.testing.assert_allclose(
            signature.invariant(other[None]), signature.invariant(base[None]), atol=1e-5
        )


def test_signature_blob_round_trip_and_flat_image():
    sig = signature.signature_of(scene(2))
    assert signature.from_blob(signature.to_blob(sig)) == pytest.approx(sig, abs=1e-3)
    flat = signature.signature_of(Image.new("RGB", (50, 40), (90, 90, 90)))
    assert not flat.any()
    assert signature.similarity(flat[None], sig[None])[0][0] == 0


@pytest.mark.parametrize("name", sorted(COPIES))
def test_copies_pass_both_signals(name):
    im = scene(3)
    s, v = _scores(COPIES[name](im), im)
    assert s >= SIG_GATE and v >= DEFAULT_THRESHOLDS["copy"], (name, s, v)


def test_distinct_scenes_fail_the_pixel_check():
    worst = max(_scores(scene(10 + i), scene(20 + i))[1] for i in range(5))
    assert worst < 0.6

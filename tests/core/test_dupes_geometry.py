"""Border trimming, the geometric same-photo check and the pair cache (issue 17)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imgfinder.core.dupes import cache, geometry, signature
from tests.core.test_dupes_core import make_pairs
from tests.core.test_dupes_scenes import scene

T = 0.80  # the copy tier's default threshold


def photo(seed: int = 3, size=(480, 360)) -> Image.Image:
    return scene(seed, size)


def jpeg(im: Image.Image, q: int = 90) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def framed(im: Image.Image, pad: tuple[int, int, int, int], colour) -> Image.Image:
    left, top, right, bottom = pad
    c = Image.new("RGB", (im.width + left + right, im.height + top + bottom), colour)
    c.paste(im, (left, top))
    return c


def score(a: Image.Image, b: Image.Image) -> geometry.Match:
    return geometry.match(geometry.features_of(a), geometry.features_of(jpeg(b)))


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (40, 160, 90)])
def test_border_box_finds_borders_of_any_colour(colour):
    im = photo()
    box = geometry.border_box(np.asarray(framed(im, (40, 0, 40, 0), colour)))
    assert abs(box[0] - 40) <= 1 and abs(box[2] - (40 + im.width)) <= 1
    assert box[1] == 0 and box[3] == im.height
    box = geometry.border_box(np.asarray(framed(im, (0, 60, 0, 60), colour)))
    assert abs(box[1] - 60) <= 1 and abs(box[3] - (60 + im.height)) <= 1


def test_border_box_leaves_a_photo_without_border_alone():
    im = np.asarray(photo())
    assert geometry.border_box(im) == (0, 0, im.shape[1], im.shape[0])
    flat = np.full((100, 100, 3), 128, np.uint8)  # all flat: nothing to trim to
    assert geometry.border_box(flat) == (0, 0, 100, 100)


def test_letterboxed_copy_signs_like_its_original():
    im = photo()
    boxed = framed(im, (0, 90, 0, 90), (0, 0, 0))
    s, _ = signature.similarity(
        signature.signature_of(im)[None], signature.signature_of(jpeg(boxed))[None]
    )
    assert s[0] > 0.97


def _copies(im: Image.Image) -> dict[str, Image.Image]:
    w, h = im.size
    return {
        "crop 10% every edge": im.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "crop 25% of one edge": im.crop((w // 4, 0, w, h)),
        "border 40 px": framed(im, (40, 40, 40, 40), (200, 30, 30)),
        "pillarbox": framed(im, (0, 200, 0, 200), (255, 255, 255)),
        "rotated 7°": im.rotate(7, Image.Resampling.BICUBIC, expand=False),
        "rotated -10°, expanded": im.rotate(-10, Image.Resampling.BICUBIC, expand=True),
        "rotated 90°": im.transpose(Image.Transpose.ROTATE_90),
        "mirrored": im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "half size": im.resize((w // 2, h // 2), Image.Resampling.LANCZOS),
    }


def test_hard_copies_pass_the_geometric_check():
    im = photo()
    for name, copy in _copies(im).items():
        m = score(im, copy)
        assert m.score >= T, (name, m)
    assert score(im, _copies(im)["mirrored"]).mirrored


def test_orb_settles_hard_copies_and_sift_is_not_computed_for_them():
    im = photo()
    fa = geometry.features_of(im)
    for name, copy in _copies(im).items():
        fb = geometry.features_of(jpeg(copy))
        assert geometry.match(fa, fb, detectors=geometry.FAST_DETECTORS).score >= T, name
        assert not any(det == "sift" for det, _ in fb._kp), name  # ORB's fit was enough
    assert not any(det == "sift" for det, _ in fa._kp)


def test_a_pair_without_any_orb_fit_is_rejected_without_sift():
    fa, fb = geometry.features_of(photo(3)), geometry.features_of(photo(4))
    assert geometry.match(fa, fb, detectors=geometry.FAST_DETECTORS).score < 0.5
    assert not any(det == "sift" for det, _ in (*fa._kp, *fb._kp))
    assert fa.xy.shape[1] == 2 and fa.desc.shape[1] == 128  # SIFT on demand (rerank reads it)


def test_a_copy_scores_higher_with_its_original_than_with_a_re_exposed_shot_containing_it():
    src = photo(5, (560, 420))
    orig = src.crop((40, 30, 520, 390))
    shot = ImageEnhance.Brightness(src.crop((60, 30, 540, 390))).enhance(1.25)
    copy = orig.crop((60, 40, 420, 320))  # a crop of the original, inside the shot's frame too
    m_orig, m_shot = score(orig, copy), score(shot, copy)
    assert abs(m_orig.gain - 1) < 0.03 and abs(m_shot.gain - 1 / 1.25) < 0.05
    assert m_orig.score >= T and m_orig.score > m_shot.score + 0.05
    brighter = ImageEnhance.Brightness(copy).enhance(1.2)  # an edited copy stays a copy
    assert score(orig, brighter).score >= T


def test_handedness_is_sure_for_a_mirror_copy_and_not_for_a_symmetric_photo():
    im = photo()
    sig = signature.signature_of(im)
    mirrored = signature.signature_of(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert geometry.handedness_sure(sig, mirrored)
    _, o = signature.similarity(sig[None], mirrored[None])
    assert int(o[0]) in geometry.MIRRORING
    fa, fb = geometry.features_of(im), geometry.features_of(jpeg(_copies(im)["mirrored"]))
    assert geometry.match(fa, fb, mirrored_first=True, both_ways=False).score >= T
    left = im.crop((0, 0, im.width // 2, im.height))
    sym = Image.new("RGB", (2 * left.width, left.height))
    sym.paste(left, (0, 0))
    sym.paste(left.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (left.width, 0))
    s = signature.signature_of(sym)
    assert not geometry.handedness_sure(s, s)  # a mirror of it is itself: try both ways


def test_a_moved_frame_is_not_the_same_photo_and_different_photos_do_not_match():
    src = photo(5, (560, 420))
    w, h = src.size
    a = src.crop((40, 30, 40 + 480, 30 + 360))
    b = ImageEnhance.Brightness(src.crop((70, 30, 70 + 480, 30 + 360))).enhance(1.25)
    m = score(a, b)
    assert m.inliers >= geometry.MIN_INLIERS  # it does line up ...
    assert m.containment < geometry.CONTAIN_ZERO
    assert m.score < 0.5, m  # ... but each frame holds content the other lacks
    assert score(photo(3), photo(4)).score < 0.5


def test_verifier_gives_nan_for_an_unreadable_file(tmp_path):
    good = tmp_path / "a.jpg"
    photo().save(good)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not a jpeg")
    assert np.isnan(geometry.GeometricVerifier()(str(good), str(bad)))


def test_missing_links_are_proposed_inside_components_only():
    # 0~1, 1~2 verified copies, 3~4 a weak link: only 0~2 is missing inside a component
    a = np.array([0, 1, 3])
    b = np.array([1, 2, 4])
    ma, mb = geometry.missing_links(a, b, np.array([0.9, 0.95, 0.2], np.float32), 5)
    assert list(zip(ma.tolist(), mb.tolist())) == [(0, 2)]
    # a pair in the list that was never checked (NaN) is missing too; an exact pair is not
    a, b = np.array([0, 0, 1, 3]), np.array([1, 2, 2, 4])
    copy = np.array([0.9, np.nan, 0.95, np.nan], np.float32)
    ma, mb = geometry.missing_links(a, b, copy, 5)
    assert list(zip(ma.tolist(), mb.tolist())) == [(0, 2)]
    exact = np.array([False, True, False, False])
    assert len(geometry.missing_links(a, b, copy, 5, exact)[0]) == 0


# -- the pair cache ---------------------------------------------------------------------------
def _key(**kw) -> str:
    args = {
        "model_id": "m",
        "ids": np.array([1, 2, 3]),
        "paths": ["/a", "/b", "/c"],
        "hashes": ["x", "y", "z"],
        "decisions": [("x", "y")],
        "settings": {"verify": True},
    }
    args.update(kw)
    return cache.fingerprint(**args)


def test_fingerprint_changes_with_every_input():
    base = _key()
    assert _key() == base
    assert _key(decisions=[("y", "x")]) == base  # a pair is unordered
    for changed in (
        {"model_id": "other"},
        {"ids": np.array([1, 2, 4])},
        {"paths": ["/a", "/b", "/moved"]},
        {"hashes": ["x", "y", "re-encoded"]},
        {"decisions": []},
        {"settings": {"verify": False}},
    ):
        assert _key(**changed) != base, changed


def test_cache_round_trip_and_damaged_file(tmp_path):
    pairs = make_pairs(3, [(0, 1, 0.9, 0.5), (1, 2, float("nan"), 0.8)])
    path = tmp_path / cache.FILE_NAME
    cache.save(path, pairs, "k1")
    got = cache.load(path, "k1")
    assert got is not None and got.stats["cached"] and got.paths == pairs.paths
    for name in ("a", "b", "exact", "similar", "sig", "orientation", "copy"):
        np.testing.assert_array_equal(getattr(got, name), getattr(pairs, name))
    assert cache.load(path, "k2") is None  # anything changed: not reused
    path.write_bytes(b"garbage")
    assert cache.load(path, "k1") is None


def test_the_scan_without_the_cnn_checks_orb_first_and_caches_its_scores_apart(tmp_path):
    from imgfinder.core.catalog import Catalog
    from imgfinder.core.dupes import sigindex, store
    from imgfinder.core.types import run

    im = photo()
    (tmp_path / "photos").mkdir()
    im.save(tmp_path / "photos" / "a.jpg", quality=95)
    im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "photos" / "b.jpg", quality=80)
    data = tmp_path / "data"
    run(sigindex.index_signatures(data, [tmp_path / "photos"]))
    cat = Catalog(data / "catalog.sqlite")
    try:
        pl = run(sigindex.scan_signatures(cat, data))
        assert np.nanmax(pl.copy) >= T
        assert store.load_verified(cat, geometry.FAST_VERSION)  # the ORB-first scores ...
        assert not store.load_verified(cat)  # ... are not those a CNN scan would reuse
    finally:
        cat.close()

"""Photographers' files: RAW (DNG from pidng), HEIC, AVIF, MPF previews, very large JPEGs,
EXIF metadata, RAW+JPEG pairs; decoded alone and taken through index, search, thumbnail,
explain and duplicates. Every file is generated here."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgfinder.core import decode, photometa, scan
from imgfinder.core.decode import DecodeError
from imgfinder.core.dupes import rawpairs
from imgfinder.core.photometa import PhotoMeta
from imgfinder.core.types import Hit
from tests.common import TEST_INPUT_SIZE, cli_args
from tests.formatutil import (
    camera_exif,
    dng_bytes,
    scene,
    write_avif,
    write_camera_jpeg,
    write_dng,
    write_heic,
    write_strip_jpeg,
)

ROOT = Path(__file__).resolve().parents[2]


def corr(a: Image.Image, b: Image.Image, size=(48, 64)) -> float:
    """Pearson correlation of two images' grey levels at one small size."""
    x = np.asarray(a.convert("L").resize(size), np.float64).ravel()
    y = np.asarray(b.convert("L").resize(size), np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


# --------------------------------------------------------------------------- RAW


def test_dng_demosaic_is_upright_and_looks_like_the_scene(tmp_path):
    path = write_dng(tmp_path / "r.dng", (768, 512), seed=1, orientation=6)
    got = decode.decode(path, min_size=64, with_meta=True)
    assert got.format == "RAW" and got.source == decode.SOURCE_RAW_DEMOSAIC
    assert (got.width, got.height) == (512, 768)  # orientation 6: portrait
    assert got.image.width < got.image.height and min(got.image.size) >= 64
    truth = Image.fromarray(scene((768, 512), seed=1)).transpose(Image.Transpose.ROTATE_270)
    assert corr(got.image, truth) > 0.8
    assert got.meta.camera == "TestCam R1"
    # without min_size: the full-size demosaic
    assert decode.open_image(path).size == (512, 768)
    assert decode.image_info(path) == {"width": 512, "height": 768, "format": "RAW", "mode": "RGB"}


def test_dng_embedded_preview_is_used_when_big_enough(tmp_path):
    path = write_dng(tmp_path / "p.dng", (768, 512), seed=2, preview_size=(384, 256), orientation=6)
    small = decode.decode(path, min_size=200)
    assert small.source == decode.SOURCE_RAW_PREVIEW
    assert small.image.size[0] < small.image.size[1]  # the RAW's orientation applied to it
    assert (small.width, small.height) == (512, 768)  # the sensor's size, not the preview's
    big = decode.decode(path, min_size=300)  # the 256-px preview is too small for 300
    assert big.source == decode.SOURCE_RAW_DEMOSAIC
    assert corr(small.image, big.image) > 0.8


def test_dng_preview_with_another_shape_is_not_used(tmp_path):
    rgb = scene((768, 512), seed=3)
    letterbox = Image.fromarray(rgb).resize((512, 288))  # 16:9 preview of a 3:2 sensor
    path = tmp_path / "lb.dng"
    path.write_bytes(dng_bytes(rgb, preview=letterbox))
    assert decode.decode(path, min_size=64).source == decode.SOURCE_RAW_DEMOSAIC


def test_corrupt_and_truncated_raw_files_get_reasons(tmp_path):
    good = write_dng(tmp_path / "g.dng", (256, 192)).read_bytes()
    (tmp_path / "t.dng").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.nef").write_bytes(os.urandom(5000))
    (tmp_path / "empty.cr2").write_bytes(b"")
    for name, word in (("t.dng", "RAW"), ("junk.nef", "RAW"), ("empty.cr2", "empty")):
        with pytest.raises(DecodeError, match=word) as info:
            decode.open_image(tmp_path / name, min_size=64)
        assert info.value.path.endswith(name)
    with pytest.raises(DecodeError, match="RAW"):
        decode.image_info(tmp_path / "junk.nef")
    assert decode.read_meta(tmp_path / "junk.nef") == PhotoMeta()


def test_scan_lists_raw_files_but_not_sidecars(tmp_path):
    write_dng(tmp_path / "a.dng", (64, 48))
    for name in ("b.NEF", "c.cr3", "d.arw", "e.raf"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a.xmp").write_text("<x/>")
    names = sorted(p.name for p in scan.iter_image_files(tmp_path))
    assert names == ["a.dng", "b.NEF", "c.cr3", "d.arw", "e.raf"]
    assert decode.sniff_format(b"FUJIFILMCCD-RAW 0201FF383501") == "RAW"
    assert decode.sniff_format(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01") == "RAW"


# --------------------------------------------------------------------------- HEIC / AVIF


@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_heic_and_avif_decode_with_metadata(tmp_path, fmt):
    img = Image.fromarray(scene((320, 240), seed=4))
    write = write_heic if fmt == "heic" else write_avif
    path = write(tmp_path / f"x.{fmt}", img, camera_exif())
    assert f".{fmt}" in decode.IMAGE_EXTENSIONS
    got = decode.decode(path, min_size=64, with_meta=True)
    assert (got.width, got.height) == (320, 240)
    assert corr(got.image, img) > 0.95
    m = got.meta
    assert m.taken == "2024-05-01T14:03:22+02:00" and m.camera == "NIKON Z 6" and m.gps
    assert m.exposure == "1/250 s, f/2.8, ISO 400, 50 mm"
    data = path.read_bytes()
    (tmp_path / f"t.{fmt}").write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError):
        decode.open_image(tmp_path / f"t.{fmt}", min_size=64)


# --------------------------------------------------------------------------- MPF previews


def test_mpf_preview_replaces_the_full_decode(tmp_path):
    img = Image.fromarray(scene((2400, 1800), seed=5))
    path = write_camera_jpeg(tmp_path / "c.jpg", img, (1200, 900), camera_exif(orientation=6))
    got = decode.decode(path, min_size=224, with_meta=True)
    assert got.format == "MPO" and got.source == decode.SOURCE_MPF
    assert (got.width, got.height) == (1800, 2400)  # main image, EXIF-rotated
    assert got.image.width < got.image.height  # the main image's orientation applied
    assert got.meta.taken.startswith("2024-05-01")
    full = decode.open_image(path)  # no min_size: the main image itself
    assert full.size == (1800, 2400)
    small = got.image.resize((96, 128))
    diff = np.abs(np.asarray(small, np.int16) - np.asarray(full.resize((96, 128)), np.int16))
    assert diff.mean() < 6


def test_mpf_preview_only_when_it_is_a_preview_and_big_enough(tmp_path):
    img = Image.fromarray(scene((2400, 1800), seed=6))
    undefined = write_camera_jpeg(tmp_path / "u.jpg", img, (1200, 900), mptype=0)
    assert decode.decode(undefined, min_size=224).source == decode.SOURCE_DCT
    small = write_camera_jpeg(tmp_path / "s.jpg", img, (160, 120))
    assert decode.decode(small, min_size=224).source == decode.SOURCE_DCT
    wide = write_camera_jpeg(tmp_path / "w.jpg", img, (1280, 720))  # not the same framing
    assert decode.decode(wide, min_size=224).source == decode.SOURCE_DCT


# --------------------------------------------------------------------------- large photos


def test_pixel_budget_counts_decoded_pixels(tmp_path, monkeypatch):
    img = Image.fromarray(scene((2000, 1500), seed=7))
    base = tmp_path / "b.jpg"
    img.save(base, "JPEG", quality=85)
    prog = tmp_path / "p.jpg"
    img.save(prog, "JPEG", quality=85, progressive=True)
    png = tmp_path / "x.png"
    img.save(png)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # 3 MP files, 1 MP budget
    got = decode.decode(base, min_size=64)
    assert got.source == decode.SOURCE_DCT and (got.width, got.height) == (2000, 1500)
    assert decode.image_info(base)["width"] == 2000
    with pytest.raises(DecodeError, match="image too large: 3000000 pixels"):
        decode.open_image(base)  # a full-size decode is refused
    with pytest.raises(DecodeError, match="progressive"):
        decode.open_image(prog, min_size=64)
    with pytest.raises(DecodeError, match="PNG images cannot be decoded at reduced size"):
        decode.open_image(png, min_size=64)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_gigapixel_jpeg_is_indexed_with_bounded_memory(tmp_path):
    """1 gigapixel (40000 x 25000) baseline JPEG, written strip by strip; decoded in a fresh
    process the way indexing does it (read, hash, DCT-scaled decode). A full decode would hold
    3 GB; the budget allows the file itself plus ~1/64 of the pixels."""
    flat = Image.new("RGB", (40000, 16), (120, 130, 140))  # DC-only blocks: a ~20 MB file
    path = write_strip_jpeg(tmp_path / "giga.jpg", 40000, 25000, tile=flat)
    size_mb = path.stat().st_size / 1e6
    code = (
        "import sys\n"
        "from imgfinder.core import decode\n"
        "data = decode.read_file(sys.argv[1]); decode.content_hash(data)\n"
        "g = decode.decode(data, min_size=224, with_meta=True)\n"
        # VmHWM: this process's own peak (ru_maxrss would include pytest's before the exec)
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]\n"
        "print(g.width, g.height, g.source, min(g.image.size), int(hwm) // 1024)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    w, h, source, side, peak_mb = out.stdout.split()
    assert (int(w), int(h), source) == (40000, 25000, "dct-draft")
    assert int(side) >= 224
    assert int(peak_mb) < 350 + size_mb, f"peak {peak_mb} MB for a {size_mb:.0f} MB file"
    assert "DecompressionBomb" not in out.stderr and out.stderr.strip() == ""


# --------------------------------------------------------------------------- metadata


def test_exif_dates_and_texts():
    p = photometa.parse_exif_date
    assert p("2024:05:01 14:03:22") == "2024-05-01T14:03:22"
    assert p("2024:05:01 14:03:22\x00", "-05:00") == "2024-05-01T14:03:22-05:00"
    assert p("0000:00:00 00:00:00") is None and p("garbage") is None and p(b"x") is None
    m = PhotoMeta(make="Canon", model="Canon EOS R5", exposure_time=2.0, f_number=8.0, iso=100)
    assert m.camera == "Canon EOS R5" and m.exposure == "2 s, f/8, ISO 100"
    assert PhotoMeta(make="FUJIFILM", model="X-T4").camera == "FUJIFILM X-T4"


def test_filter_and_sort_by_capture_date():
    items = ["a", "b", "c", "d"]
    taken = {"a": "2024-05-01T10:00:00", "b": "2023-12-31T23:59:59", "c": None}
    taken["d"] = "2024-05-31T08:00:00+02:00"
    t = taken.get
    assert photometa.filter_by_date(items, t, "2024") == ["a", "d"]
    assert photometa.filter_by_date(items, t, until="2024-05-01") == ["a", "b"]
    assert photometa.filter_by_date(items, t, "2024-05-02", "2024-05") == ["d"]
    assert photometa.sort_by_date(items, t) == ["b", "a", "d", "c"]
    assert photometa.sort_by_date(items, t, newest_first=True) == ["d", "a", "b", "c"]
    with pytest.raises(ValueError, match="not a date"):
        photometa.filter_by_date(items, t, "May 2024")


def test_raw_jpeg_pairs_by_name_or_capture_time():
    paths = [
        "/p/IMG_1.CR3",
        "/p/IMG_1.JPG",
        "/p/IMG_2.CR3",
        "/q/DSC_9.NEF",
        "/q/other_name.jpg",
        "/r/burst_1.nef",
        "/r/burst_2.nef",
        "/r/burst.jpg",
        "/p/IMG_1.xmp",
        "/s/IMG_5.jpg",
    ]
    cam = {"make": "Nikon", "model": "Z 6"}
    metas = {
        3: PhotoMeta(taken="2024-01-01T10:00:00", **cam),
        4: PhotoMeta(taken="2024-01-01T10:00:00+01:00", **cam),
        # a burst: two RAWs in the same second never pair by time
        5: PhotoMeta(taken="2024-01-02T10:00:00", **cam),
        6: PhotoMeta(taken="2024-01-02T10:00:00", **cam),
        7: PhotoMeta(taken="2024-01-02T10:00:00", **cam),
    }
    a, b = rawpairs.raw_jpeg_pairs(paths, metas)
    assert sorted(zip(a.tolist(), b.tolist())) == [(0, 1), (3, 4)]
    hits = [Hit(10, "x.jpg", 0.9), Hit(11, "x.cr3", 0.8), Hit(12, "y.jpg", 0.7)]
    assert [h.image_id for h in rawpairs.collapse_pairs(hits, {10: 11, 11: 10})] == [10, 12]


def test_old_catalog_gains_the_columns(tmp_path):
    from imgfinder.core.catalog import _SCHEMA, Catalog

    db = tmp_path / "catalog.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(_SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO roots (path, added_at) VALUES ('/x', 0)")
    conn.execute(
        "INSERT INTO images (path, root_id, status, updated_at) VALUES ('/x/a.jpg', 1, 'ok', 0)"
    )
    conn.commit()
    conn.close()
    cat = Catalog(db)
    cols = {r[1] for r in cat.execute("PRAGMA table_info(images)")}
    assert {c for c, _ in photometa.COLUMNS} <= cols
    assert cat.image_by_path("/x/a.jpg") is not None  # the old row is intact
    assert cat.meta_unread(1) == [(1, "/x/a.jpg")]
    cat.close()
    Catalog(db).close()  # opening again is a no-op


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def formats_lib(tmp_path_factory, weights_file):
    """A library over one photo of every format (and a broken copy of each), indexed."""
    from imgfinder.core.extract import ModelConfig
    from imgfinder.core.library import Library, run

    root = tmp_path_factory.mktemp("formats") / "Photos"
    root.mkdir()
    shot = scene((768, 512), seed=11)
    exif = camera_exif(taken="2023:07:14 09:00:00", make="TestCam", model="TestCam R1", gps=False)
    (root / "shot1.dng").write_bytes(
        dng_bytes(shot, preview=Image.fromarray(shot).resize((384, 256)))
    )
    Image.fromarray(shot).save(root / "shot1.jpg", quality=92, exif=exif.tobytes())
    write_dng(root / "raw_only.dng", (512, 384), seed=12)
    write_heic(root / "phone.heic", Image.fromarray(scene((400, 300), seed=13)), camera_exif())
    write_avif(
        root / "web.avif",
        Image.fromarray(scene((400, 300), seed=14)),
        camera_exif(taken="2022:01:02 03:04:05", gps=False),
    )
    write_camera_jpeg(
        root / "camera.jpg",
        Image.fromarray(scene((1600, 1200), seed=15)),
        (800, 600),
        camera_exif(taken="2024:08:09 10:11:12"),
    )
    write_strip_jpeg(root / "huge.jpg", 12000, 9000)  # the 108 MP photo
    for name in ("shot1.dng", "phone.heic", "web.avif", "camera.jpg"):
        data = (root / name).read_bytes()
        stem, ext = os.path.splitext(name)
        (root / f"{stem}_broken{ext}").write_bytes(data[: len(data) // 3])
    (root / "junk.nef").write_bytes(os.urandom(4096))
    data = tmp_path_factory.mktemp("formats-data")
    cfg = ModelConfig(weights=str(weights_file), device="cpu", input_size=TEST_INPUT_SIZE)
    lib = Library(data, cfg, index_backend="exact")
    summary = run(lib.index([root]))
    yield lib, root, summary, data
    lib.close()


def _row(lib, path: Path):
    return lib.catalog.execute(
        "SELECT status, error, decode_source, taken, camera_model, width, height "
        "FROM images WHERE path=?",
        (str(path),),
    ).fetchone()


def test_every_format_is_indexed_and_broken_copies_are_skipped(formats_lib):
    lib, root, summary, _ = formats_lib
    assert summary.indexed == 7
    assert set(map(os.path.basename, summary.skipped)) == {
        "shot1_broken.dng",
        "phone_broken.heic",
        "web_broken.avif",
        "camera_broken.jpg",
        "junk.nef",
    }
    assert all(summary.skipped.values())
    expect = {
        "shot1.dng": ("raw-preview", None, "TestCam R1", 768, 512),
        "raw_only.dng": ("raw-demosaic", None, "TestCam R1", 512, 384),
        "shot1.jpg": ("dct-draft", "2023-07-14T09:00:00+02:00", "TestCam R1", 768, 512),
        "phone.heic": ("full", "2024-05-01T14:03:22+02:00", "NIKON Z 6", 400, 300),
        "web.avif": ("full", "2022-01-02T03:04:05+02:00", "NIKON Z 6", 400, 300),
        "camera.jpg": ("mpf-preview", "2024-08-09T10:11:12+02:00", "NIKON Z 6", 1600, 1200),
        "huge.jpg": ("dct-draft", None, None, 12000, 9000),
    }
    for name, (source, taken, model, w, h) in expect.items():
        status, error, src, tk, cam, width, height = _row(lib, root / name)
        assert (status, src, tk, cam, width, height) == ("ok", source, taken, model, w, h), name


def test_search_thumbnail_and_explain_for_every_format(formats_lib, tmp_path):
    from imgfinder.core import explain
    from imgfinder.gui.thumbnails import DiskCache, ThumbRequest, make_thumbnail

    lib, root, _, _ = formats_lib
    hits = lib.search(root / "shot1.dng", k=3)
    assert hits[0].path == str(root / "shot1.dng") and hits[0].score > 0.99
    assert str(root / "shot1.jpg") in [h.path for h in hits]
    one = lib.search(root / "shot1.dng", k=3, raw_pairs_as_one=True)
    names = [os.path.basename(h.path) for h in one]
    assert "shot1.dng" in names and "shot1.jpg" not in names and len(one) == 3
    cache = DiskCache(tmp_path / "thumbs")
    for name in ("shot1.dng", "raw_only.dng", "phone.heic", "web.avif", "camera.jpg", "huge.jpg"):
        q = make_thumbnail(ThumbRequest(name, str(root / name), 96), cache)
        assert not q.isNull() and max(q.width(), q.height()) == 96, name
    acts = explain.activations_many(
        lib.extractor, [str(root / "shot1.dng"), str(root / "huge.jpg"), str(root / "web.avif")]
    )
    assert acts[0].image_size == (768, 512) and acts[1].image_size == (12000, 9000)
    expl = explain.match_maps(acts[0], acts[2])
    assert np.isfinite(expl.query_map).all() and np.isfinite(expl.result_map).all()
    photos = [explain.load_photo(str(root / n), 256) for n in ("shot1.dng", "web.avif")]
    assert 128 <= min(photos[0].size) and max(photos[0].size) <= 256
    img = explain.render_match(photos[0], photos[1], expl)
    assert img.width > 256


def test_raw_jpeg_pair_is_one_photo_and_the_raw_is_kept(formats_lib):
    from imgfinder.core import dupes
    from imgfinder.core.library import run

    lib, root, _, _ = formats_lib
    pairs = run(dupes.scan(lib))
    assert pairs.stats["raw_jpeg_pairs"] == 1
    groups = dupes.group(pairs, "copy")
    names = [sorted(os.path.basename(p) for p in g.paths) for g in groups]
    assert ["shot1.dng", "shot1.jpg"] in names
    g = groups[names.index(["shot1.dng", "shot1.jpg"])]
    facts, choice = dupes.suggest_keeper(g)
    assert os.path.basename(facts[choice.keeper].path) == "shot1.dng"
    assert "camera RAW" in choice.reason


def test_search_json_has_metadata_and_date_filters(formats_lib, weights_file, capsys):
    from imgfinder.cli import main

    lib, root, _, data = formats_lib
    base = [*cli_args(data, weights_file), "--index", "exact", "search", str(root / "phone.heic")]
    assert main([*base, "-k", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_name = {os.path.basename(r["path"]): r for r in out["results"]}
    m = by_name["phone.heic"]["metadata"]
    assert m["taken"] == "2024-05-01T14:03:22+02:00" and m["camera"] == "NIKON Z 6"
    assert m["lens"] == "NIKKOR Z 24-70mm f/4 S" and m["gps"] is True
    assert m["exposure"] == "1/250 s, f/2.8, ISO 400, 50 mm"
    assert by_name["shot1.dng"]["decoded_from"] == "raw-preview"
    assert main([*base, "-k", "7", "--json", "--since", "2024", "--sort", "date"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [os.path.basename(r["path"]) for r in out["results"]] == ["phone.heic", "camera.jpg"]
    assert main([*base, "--until", "2023-07", "--sort", "date-desc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [os.path.basename(x.split()[-1]) for x in lines] == ["shot1.jpg", "web.avif"]
    assert main([*base, "--since", "last week"]) == 2


def test_metadata_of_photos_indexed_before_it_was_recorded_is_filled_in(formats_lib):
    from imgfinder.core.library import run

    lib, root, _, _ = formats_lib
    cols = ", ".join(f"{c}=NULL" for c, _ in photometa.COLUMNS if c != "decode_source")
    with lib.catalog.transaction() as c:
        c.execute(f"UPDATE images SET {cols}")
    summary = run(lib.index())
    assert summary.indexed == 0  # nothing decoded again
    assert _row(lib, root / "camera.jpg")[3] == "2024-08-09T10:11:12+02:00"
    assert _row(lib, root / "shot1.dng")[4] == "TestCam R1"


def test_keeper_rule_saved_before_the_raw_criterion_gains_it():
    from imgfinder.core.dupes.keeper import FileFacts, KeeperRule, choose_keeper

    old = KeeperRule.from_dict({"criteria": ["resolution", "format"], "formats": ["JPEG"]})
    assert old.criteria == ("raw", "resolution", "format")
    raw = FileFacts("/p/a.nef", width=6000, height=4000, format="RAW")
    jpg = FileFacts("/p/a.jpg", width=6048, height=4024, format="JPEG")  # more pixels
    assert choose_keeper([jpg, raw]).keeper == 1
    assert choose_keeper([jpg, raw], KeeperRule(criteria=("resolution", "raw"))).keeper == 0


def test_dng_bytes_without_a_name_are_still_raw(tmp_path):
    path = write_dng(tmp_path / "r.dng", (256, 192), seed=8)
    got = decode.decode(path.read_bytes(), min_size=64)
    assert got.format == "RAW" and (got.width, got.height) == (256, 192)
    noext = tmp_path / "IMG_0001"
    noext.write_bytes(path.read_bytes())
    assert decode.decode(noext, min_size=64).format == "RAW"

"""Photographers' files: decode speed by route, preview fidelity, and a 150 MP JPEG's cost.

Prints, in one run (decode stage as indexing runs it: read, hash, decode for the model's
input size, squash to the input square; one thread):
  1. 24 MP RAW (DNG) through its embedded 1620x1080 JPEG preview vs through LibRaw's
     half-size demosaic (same mosaic, written without a preview): images/s;
  2. 24 MP camera JPEG with a 1920x1280 MPF preview: full-size decode, DCT-scaled decode of
     the main image (imgfinder before MPF previews) and preview decode: images/s, plus the
     cosine between the descriptors of the preview decode and of the full decode;
  3. a 150 MP JPEG (15000 x 10000, written strip by strip): imgfinder's decode vs Pillow's
     full decode, wall time and peak memory, each in a fresh process.

Photos are built from the Oxford Flowers photos in ../shared/data when present (upscaled, with
sensor-like grain), else synthetic scenes. The cosine depends on the weights: run it with
pretrained ones (`--backbone efficientnet-lite0`); the random-init ResNet50 is for plumbing.

    python benchmarks/formats.py [--images 4] [--backbone efficientnet-lite0]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import table, weights_for_bench  # noqa: E402

FLOWERS = ROOT.parent / "shared" / "data" / "oxford-flowers17-12class"
if not FLOWERS.is_dir():
    FLOWERS = Path("/work/shared/data/oxford-flowers17-12class")


def source_photos(n: int, size: tuple[int, int]):
    """n RGB images of `size`: flower photos cropped to its aspect, upscaled, with grain."""
    from PIL import Image

    from tests.formatutil import scene

    files = sorted(FLOWERS.glob("*/*.jpg"))[::80][:n] if FLOWERS.is_dir() else []
    rng = np.random.default_rng(0)
    w, h = size
    for i in range(n):
        if i < len(files):
            im = Image.open(files[i]).convert("RGB")
            ch = round(im.width * h / w)
            im = im.crop((0, (im.height - ch) // 2, im.width, (im.height - ch) // 2 + ch))
            im = im.resize(size, Image.Resampling.BICUBIC)
        else:
            im = Image.fromarray(scene((w // 8, h // 8), seed=i)).resize(size)
        grain = rng.normal(0, 5, size=(h, w, 1)).astype(np.float32)
        arr = np.asarray(im, np.float32) + grain
        yield (
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)),
            (files[i].name if i < len(files) else "synthetic"),
        )


def bayer(img) -> np.ndarray:
    """RGGB 12-bit mosaic of an sRGB image (float32, one channel at a time: 24 MP fits)."""
    arr = np.asarray(img)
    h, w, _ = arr.shape
    m = np.empty((h, w), np.uint16)
    lut = ((np.arange(256, dtype=np.float32) / 255) ** 2.2 * 4095).astype(np.uint16)
    m[0::2, 0::2] = lut[arr[0::2, 0::2, 0]]
    m[0::2, 1::2] = lut[arr[0::2, 1::2, 1]]
    m[1::2, 0::2] = lut[arr[1::2, 0::2, 1]]
    m[1::2, 1::2] = lut[arr[1::2, 1::2, 2]]
    return m


def write_raws(folder: Path, n: int) -> tuple[list[Path], list[Path]]:
    """Each 24 MP mosaic twice: with a 1620x1080 JPEG preview and without any."""
    from PIL import Image

    from tests.formatutil import dng_bytes

    folder.mkdir(parents=True, exist_ok=True)
    with_prev, without = [], []
    for i, (img, _) in enumerate(source_photos(n, (6000, 4000))):
        preview = img.resize((1620, 1080), Image.Resampling.LANCZOS)
        mosaic = bayer(img)
        a, b = folder / f"P{i:03d}.dng", folder / f"D{i:03d}.dng"
        a.write_bytes(dng_bytes(None, preview=preview, mosaic=mosaic))
        b.write_bytes(dng_bytes(None, mosaic=mosaic))
        with_prev.append(a)
        without.append(b)
    return with_prev, without


def write_camera_jpegs(folder: Path, n: int) -> list[Path]:
    from tests.formatutil import write_camera_jpeg

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (img, _) in enumerate(source_photos(n, (6000, 4000))):
        out.append(write_camera_jpeg(folder / f"C{i:03d}.jpg", img, (1920, 1280), quality=90))
    return out


def decode_rate(files: list[Path], size: int, *, min_size: int | None, repeat: int = 1):
    """images/s of read + hash + decode + squash to size x size (what Extractor.prepare does),
    and the routes taken."""
    from PIL import Image

    from imgfinder.core import decode

    routes = set()
    t = time.perf_counter()
    for _ in range(repeat):
        for f in files:
            data = decode.read_file(f)
            decode.content_hash(data)
            got = decode.decode(data, min_size=min_size, path_hint=f)
            got.image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
            routes.add(got.source)
    return len(files) * repeat / (time.perf_counter() - t), ",".join(sorted(routes))


def cosines(files: list[Path], ex) -> dict[str, list[float]]:
    """Per photo: cosine(preview, full decode) and cosine(DCT-scaled main, full decode)."""
    from PIL import Image

    from imgfinder.core import decode

    out = {"preview": [], "dct": [], "others": []}
    fulls = []
    for f in files:
        full = ex.to_array(decode.open_image(f))
        main = decode.open_image(f, min_size=ex.input_size)  # MPF preview route
        with Image.open(f) as im:  # the main image DCT-scaled, as before MPF previews
            im.draft("RGB", (ex.input_size, ex.input_size))
            dct = ex.to_array(im.convert("RGB"))
        v = ex.embed_arrays([full, ex.to_array(main), dct])
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out["preview"].append(float(v[0] @ v[1]))
        out["dct"].append(float(v[0] @ v[2]))
        fulls.append(v[0])
    m = np.stack(fulls) @ np.stack(fulls).T  # different photos, for scale
    out["others"] = m[np.triu_indices(len(fulls), 1)].tolist()
    return out


_BIG_CODE = """
import json, sys, time
from PIL import Image
t = time.perf_counter()
if sys.argv[2] == "imgfinder":
    from imgfinder.core import decode
    data = decode.read_file(sys.argv[1]); decode.content_hash(data)
    g = decode.decode(data, min_size=224)
    size, route = g.image.size, g.source
else:
    Image.MAX_IMAGE_PIXELS = None
    with open(sys.argv[1], "rb") as fh:
        data = fh.read()
    import io, hashlib
    hashlib.blake2b(data, digest_size=16).hexdigest()
    im = Image.open(io.BytesIO(data)).convert("RGB")
    size, route = im.size, "pillow-full"
    im.resize((224, 224), Image.Resampling.BILINEAR, reducing_gap=3.0)
# VmHWM is this process's own peak (ru_maxrss would include the parent's before exec)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(json.dumps({"s": time.perf_counter() - t, "size": size, "route": route,
                  "peak_mb": int(hwm) / 1024}))
"""


def big_jpeg(path: Path) -> Path:
    """15000 x 10000 baseline JPEG from a 256-row photo strip repeated (restart intervals)."""

    from tests.formatutil import _segments

    img, _ = next(source_photos(1, (15000, 256)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, subsampling="4:2:0", restart_marker_rows=1)
    header, scan = _segments(buf.getvalue())
    intervals = []
    pos = 0
    for i in range(len(scan) - 1):
        if scan[i] == 0xFF and 0xD0 <= scan[i + 1] <= 0xD7:
            intervals.append(scan[pos:i])
            pos = i + 2
    intervals.append(scan[pos:])
    header = bytearray(header)
    sof = header.index(b"\xff\xc0")
    header[sof + 5 : sof + 7] = (10000).to_bytes(2, "big")
    rows = -(-10000 // 16)
    with open(path, "wb") as fh:
        fh.write(header)
        for r in range(rows):
            fh.write(intervals[r % len(intervals)])
            if r != rows - 1:
                fh.write(bytes((0xFF, 0xD0 + r % 8)))
        fh.write(b"\xff\xd9")
    from imgfinder.core import decode

    assert decode.image_info(path)["width"] == 15000  # (Image.open would warn: 150 MP)
    return path


def run_big(path: Path, mode: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", _BIG_CODE, str(path), mode],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    if out.stderr.strip():
        print(f"  stderr ({mode}): {out.stderr.strip()[:200]}")
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4, help="photos per route (default 4)")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--backbone", default=None, help="e.g. efficientnet-lite0 (pretrained)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="imgfinder-formats-"))
    size = args.input_size
    src = f"Oxford Flowers photos upscaled ({FLOWERS})" if FLOWERS.is_dir() else "synthetic"
    print(f"photos: {src}; decode stage, 1 thread; input {size}")

    t = time.perf_counter()
    with_prev, without = write_raws(work / "raw", args.images)
    jpegs = write_camera_jpegs(work / "jpeg", args.images)
    print(f"generated {args.images} x 24 MP DNG (x2) and JPEG in {time.perf_counter() - t:.0f} s")

    rows = []
    r_prev, route_p = decode_rate(with_prev, size, min_size=size)
    r_dem, route_d = decode_rate(without, size, min_size=size)
    rows.append({"photo": "24 MP DNG", "route": route_p, "img/s": f"{r_prev:.2f}"})
    rows.append({"photo": "24 MP DNG", "route": route_d, "img/s": f"{r_dem:.2f}"})
    r_full, route_f = decode_rate(jpegs, size, min_size=None)
    r_mpf, route_m = decode_rate(jpegs, size, min_size=size, repeat=3)
    from PIL import Image

    def dct_only():
        t0 = time.perf_counter()
        for f in jpegs:
            from imgfinder.core import decode

            data = decode.read_file(f)
            decode.content_hash(data)
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (size, size))
                im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return len(jpegs) / (time.perf_counter() - t0)

    r_dct = dct_only()
    rows.append({"photo": "24 MP JPEG+MPF", "route": route_f, "img/s": f"{r_full:.2f}"})
    rows.append({"photo": "24 MP JPEG+MPF", "route": "dct-draft (main)", "img/s": f"{r_dct:.2f}"})
    rows.append({"photo": "24 MP JPEG+MPF", "route": route_m, "img/s": f"{r_mpf:.2f}"})
    print(table(rows, ["photo", "route", "img/s"]))
    print(
        f"RAW preview vs demosaic: {r_prev / r_dem:.1f}x; MPF preview vs full decode: "
        f"{r_mpf / r_full:.1f}x, vs DCT-scaled main: {r_mpf / r_dct:.1f}x"
    )

    from imgfinder.core.extract import Extractor, ModelConfig

    if args.backbone:
        cfg = ModelConfig(backbone=args.backbone, device="cpu", input_size=size)
        desc = f"{args.backbone} (pretrained weights)"
    else:
        weights, desc = weights_for_bench(work)
        cfg = ModelConfig(weights=weights, device="cpu", input_size=size)
    ex = Extractor(cfg)
    c = cosines(jpegs, ex)
    print(
        f"descriptor cosine to the full decode, {desc}: MPF preview mean "
        f"{np.mean(c['preview']):.4f} (min {min(c['preview']):.4f}); DCT-scaled main mean "
        f"{np.mean(c['dct']):.4f} (min {min(c['dct']):.4f}); for scale, two different photos "
        f"of the set: mean {np.mean(c['others']):.4f} (max {max(c['others']):.4f})"
    )

    big = big_jpeg(work / "big150.jpg")
    print(f"150 MP JPEG: {big.stat().st_size / 1e6:.0f} MB file")
    rows = []
    for mode in ("pillow-full", "imgfinder"):
        r = run_big(big, mode)
        rows.append(
            {
                "decoder": mode,
                "route": r["route"],
                "decoded size": "x".join(map(str, r["size"])),
                "seconds": f"{r['s']:.2f}",
                "peak RSS MB": f"{r['peak_mb']:.0f}",
            }
        )
    print(table(rows, list(rows[0])))
    print("timings from a shared, loaded machine; each 150 MP run in a fresh process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

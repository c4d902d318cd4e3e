"""Which copy the keeper rule suggests keeping, original against its copies, and what it costs.

For each of N flower photos (Oxford Flowers-17, beside the repository; never copied into it;
cropped to 3:2, the shape of camera photos, except in the first case, which keeps them square)
the original and a copy are compared by `dupes.choose_keeper` with the default rule, as the
duplicates view and `imgfinder dupes` do: a square photo on an even mat (its shape unchanged,
so not measured: a known miss), copies on a white or black mat, on a grey canvas,
letterboxed/pillarboxed to 16:9, and resized to 2x (the copy should win: more picture) and
0.5x. Each is counted with the picture measured inside the frame (the rule now) and with
header facts alone (`measure=False`, the rule before), in the same run. Then the time per
group at camera size (a 24 MP JPEG and its framed copy), where resolution decides and both
files are decoded small.

    python benchmarks/keeper.py [--photos 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DEFAULT_DATASET, dataset_files  # noqa: E402
from imgfinder.core import dupes  # noqa: E402


def framed(im: Image.Image, pad: tuple[int, int], colour) -> Image.Image:
    out = Image.new("RGB", (im.width + 2 * pad[0], im.height + 2 * pad[1]), colour)
    out.paste(im, pad)
    return out


def to_16_9(im: Image.Image) -> Image.Image:
    w, h = max(im.width, round(im.height * 16 / 9)), 0
    h = round(w * 9 / 16)
    if h < im.height:
        h, w = im.height, round(im.height * 16 / 9)
    return framed(im, ((w - im.width) // 2, (h - im.height) // 2), "black")


CASES = {  # name: (make the copy, whether the original should be kept)
    "square photo, even mat": (lambda im: framed(im, (20, 20), "white"), True),
    "mat 40 px white": (lambda im: framed(im, (40, 40), "white"), True),
    "mat 40 px black": (lambda im: framed(im, (40, 40), "black"), True),
    "canvas grey 80x20 px": (lambda im: framed(im, (80, 20), (128, 128, 128)), True),
    "letterbox/pillarbox 16:9": (to_16_9, True),
    "resized 2x (copy kept)": (lambda im: im.resize((im.width * 2, im.height * 2)), False),
    "resized 0.5x": (lambda im: im.resize((im.width // 2, im.height // 2)), True),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATASET)
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"no photos at {args.data} (set IMGFINDER_SHARED_DATA)")
        return 1
    files, _ = dataset_files(args.data)
    files = files[:: max(1, len(files) // args.photos)][: args.photos]
    tmp = Path(tempfile.mkdtemp(prefix="imgfinder-keeper-"))
    right = {k: [0, 0] for k in CASES}  # [now, before]
    ms = {k: 0.0 for k in CASES}
    for i, f in enumerate(files):
        square = Image.open(f).convert("RGB")
        # photos are 3:2 or 4:3, the flowers square: a 3:2 crop of each (all but one case)
        im = square.crop((0, 0, square.width, round(square.width * 2 / 3)))
        im.save(tmp / f"o{i}.jpg", quality=92)
        square.save(tmp / f"q{i}.jpg", quality=92)
        for j, (name, (make, keep_orig)) in enumerate(CASES.items()):
            copy = tmp / f"c{i}_{j}.jpg"
            is_square = name.startswith("square")
            orig = tmp / (f"q{i}.jpg" if is_square else f"o{i}.jpg")
            make(square if is_square else im).save(copy, quality=92)
            want = 1 if keep_orig else 0
            t = time.perf_counter()
            now = dupes.choose_keeper([dupes.file_facts(str(copy)), dupes.file_facts(str(orig))])
            ms[name] += 1000 * (time.perf_counter() - t)
            before = dupes.choose_keeper(
                [dupes.file_facts(str(copy)), dupes.file_facts(str(orig))], measure=False
            )
            right[name][0] += now.keeper == want
            right[name][1] += before.keeper == want
    n = len(files)
    print(
        f"{n} flower photos cropped to 3:2 ({im.width}x{im.height} px; the first case square, "
        f"{square.width}x{square.height}), default keeper rule"
    )
    print(f"{'copy':28s} {'right keeper now':>17s} {'before':>8s} {'ms/group':>9s}")
    for name in CASES:
        print(
            f"{name:28s} {right[name][0]:>11d}/{n:<5d} {right[name][1]:>4d}/{n:<3d} "
            f"{ms[name] / n:>9.1f}"
        )
    # camera size: decoding small is the cost
    im = Image.open(files[0]).convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC)
    big, big_framed = tmp / "big.jpg", tmp / "big_framed.jpg"
    im.save(big, quality=92)
    framed(im, (200, 200), "white").save(big_framed, quality=92)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        got = dupes.choose_keeper([dupes.file_facts(str(big_framed)), dupes.file_facts(str(big))])
        times.append(1000 * (time.perf_counter() - t))
    t = time.perf_counter()
    dupes.choose_keeper(
        [dupes.file_facts(str(big_framed)), dupes.file_facts(str(big))], measure=False
    )
    header = 1000 * (time.perf_counter() - t)
    print(
        f"24 MP JPEG + framed copy: {min(times):.0f} ms per group measured "
        f"(header facts alone {header:.1f} ms); {got.reason}"
    )
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

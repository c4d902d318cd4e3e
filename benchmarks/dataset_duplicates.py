"""Find the flower dataset's own duplicates (crops, zooms, mirrors of one photo) for review.

The benchmarks build their "truth" on the assumption that two different dataset photos are
not the same photo. Oxford Flowers-17 breaks that: some photos are crops or zooms of another
one. `duplicates.clean_dataset` catches near-identical ones by DCT signature and pHash, which
miss crops; this script checks EVERY pair of photos within a class (no candidate stage, so
nothing depends on the signature or on a CNN) with the geometric check (SIFT + RANSAC,
aligned detail correlation, containment: core/dupes/geometry.py) and lists the pairs scoring
at least --min-score, then renders a contact sheet (each pair side by side with its score)
to look at. Pairs confirmed by eye are committed, names only, in
benchmarks/flowers17_duplicates.txt, which clean_dataset leaves out too.

    python benchmarks/dataset_duplicates.py [--min-score 0.5] [--sheet /tmp/dupes_sheet.png]
    python benchmarks/dataset_duplicates.py --contain-from 0.80 --min-score 0.6   # 2nd pass:
        # two different crops of one photo each hold a little the other lacks
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DEFAULT_DATASET  # noqa: E402


def find(data: Path, min_score: float) -> list[tuple[float, str, str]]:
    from imgfinder.core.dupes import geometry  # noqa: PLC0415

    out = []
    t0 = time.perf_counter()
    checked = 0
    for c in sorted(d.name for d in data.iterdir() if d.is_dir()):
        files = sorted((data / c).glob("*.jpg"))
        feats = [geometry.load_features(str(f)) for f in files]
        for i in range(len(files)):
            for j in range(i + 1, len(files)):
                m = geometry.match(feats[i], feats[j])
                checked += 1
                if m.score >= min_score:
                    out.append((m.score, f"{c}/{files[i].name}", f"{c}/{files[j].name}"))
        print(f"{c}: {len(out)} pairs so far, {checked} checked, {time.perf_counter() - t0:.0f} s")
    return sorted(out, reverse=True)


def sheet(data: Path, pairs: list[tuple[float, str, str]], path: Path, cell: int = 160) -> None:
    """Pairs side by side, four pairs per row, each labelled with its score and names."""
    cols = 4
    rows = max(1, -(-len(pairs) // cols))
    w, h = cols * (2 * cell + 16), rows * (cell + 28)
    im = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for k, (s, a, b) in enumerate(pairs):
        x0, y0 = (k % cols) * (2 * cell + 16), (k // cols) * (cell + 28)
        for n, name in enumerate((a, b)):
            th = Image.open(data / name).convert("RGB")
            th.thumbnail((cell, cell))
            im.paste(th, (x0 + n * cell, y0))
        label = f"#{k} {s:.2f} {Path(a).stem[6:]}~{Path(b).stem[6:]}"
        draw.text((x0 + 2, y0 + cell + 4), label, fill=(0, 0, 0))
    im.save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATASET))
    ap.add_argument("--min-score", type=float, default=0.5)
    ap.add_argument("--sheet", default="/tmp/dupes_sheet.png")
    ap.add_argument(
        "--contain-from",
        type=float,
        help="count containment from this share (geometry.CONTAIN_ZERO; default 0.95)",
    )
    args = ap.parse_args()
    if args.contain_from is not None:
        from imgfinder.core.dupes import geometry  # noqa: PLC0415

        geometry.CONTAIN_ZERO, geometry.CONTAIN_FULL = args.contain_from, args.contain_from + 0.01
    data = Path(args.data)
    pairs = find(data, args.min_score)
    for k, (s, a, b) in enumerate(pairs):
        print(f"#{k} {s:.3f} {a} {b}")
    sheet(data, pairs, Path(args.sheet))
    print(f"{len(pairs)} pairs >= {args.min_score}; contact sheet: {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

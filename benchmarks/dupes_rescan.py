"""Repeated `dupes` scan with nothing changed (pair cache) vs a scan that has to recompute.

Builds N small photos (Oxford Flowers-17 photos at 256 px, each saved at several JPEG
qualities, so there are copy families), indexes them (EfficientNet-Lite0, input 112), then
times: the first scan (features + signatures; the geometric check is off here, since this
measures the cache, not the check), the repeated scan (cache hit, median of 5), and a scan
after one "not duplicates" decision (cache invalidated, recomputed).

    python benchmarks/dupes_rescan.py [--photos 3500]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.dupes_copies import DATA  # noqa: E402


def build(root: Path, n: int) -> None:
    files = sorted(DATA.glob("*/*.jpg"))
    qualities = (95, 85, 75, 65)
    made = 0
    for q in qualities:
        for f in files:
            if made >= n:
                return
            im = Image.open(f).convert("RGB")
            im.thumbnail((256, 256))
            d = root / f"q{q}" / f.parent.name
            d.mkdir(parents=True, exist_ok=True)
            im.save(d / f.name, quality=q)
            made += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=3500)
    args = ap.parse_args()
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    from imgfinder.core import dupes  # noqa: PLC0415
    from imgfinder.core.extract import ModelConfig  # noqa: PLC0415
    from imgfinder.core.library import Library, run  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="imgfinder-rescan-"))
    try:
        build(tmp / "photos", args.photos)
        cfg = ModelConfig(backbone="efficientnet-lite0", device="cpu", input_size=112)
        lib = Library(tmp / "data", cfg, allow_download=False)
        t0 = time.perf_counter()
        run(lib.index([tmp / "photos"]))
        t_index = time.perf_counter() - t0
        t0 = time.perf_counter()
        first = run(dupes.scan(lib, verify=False))
        t_first = time.perf_counter() - t0
        reps = []
        for _ in range(5):
            t0 = time.perf_counter()
            again = run(dupes.scan(lib, verify=False))
            reps.append(time.perf_counter() - t0)
        assert again.stats.get("cached") and len(again) == len(first)
        g = dupes.group(first, "copy", 0.5) or dupes.group(first, "similar")
        dupes.mark(lib.catalog, g[0], dupes.DISTINCT)
        t0 = time.perf_counter()
        after = run(dupes.scan(lib, verify=False))
        t_after = time.perf_counter() - t0
        assert not after.stats.get("cached")
        lib.close()
        print(f"{len(first.ids)} photos, {len(first)} pairs; Lite0 ImageNet, input 112")
        print(f"index {t_index:.1f} s")
        print(f"first scan (no cache)               {t_first:.2f} s")
        print(f"repeated scan, nothing changed      {statistics.median(reps):.3f} s (median of 5)")
        print(f"scan after one decision (recomputed) {t_after:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Repeated `dupes` scan with nothing changed (pair cache) vs a scan that has to recompute.

Builds N small photos (Oxford Flowers-17 photos at 256 px, each saved at several JPEG
qualities, so there are copy families), indexes them (EfficientNet-Lite0, input 112), then
times: the first scan (features + signatures; the geometric check is off here, since this
measures the cache, not the check), the repeated scan (cache hit, median of 5), and a scan
after one "not duplicates" decision (cache invalidated, recomputed).

    python benchmarks/dupes_rescan.py [--photos 3500]
    python benchmarks/dupes_rescan.py --synthetic 100000

--synthetic N: no images are decoded. A catalog of N photos is written directly (rows of
`index --signatures-only`: content hash, size, signature; 1% byte-identical pairs, 2% in
families of near-identical signatures), then the same three scans run through the torch-free
signatures path (core/dupes/sigindex.py, geometric check off: the files do not exist), plus
grouping all tiers, which the app and `dupes` do after every scan, and the exact tier alone
from the catalog's hashes (`dupes --tier exact`, never cached, needs none).
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


def synthetic(n: int, seed: int = 0) -> int:
    """Repeated scans of an N-photo catalog written directly (no decoding, no model)."""
    import numpy as np  # noqa: PLC0415

    from imgfinder.core import dupes  # noqa: PLC0415
    from imgfinder.core.dupes import sigindex, signature, store  # noqa: PLC0415
    from imgfinder.core.types import run  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    tmp = Path(tempfile.mkdtemp(prefix="imgfinder-rescan-"))
    try:
        data, root = tmp / "data", tmp / "photos"
        root.mkdir(parents=True)
        t0 = time.perf_counter()
        cat = sigindex.open_catalog(data, sigindex.WriterLock(data))
        rid = cat.add_root(str(root))
        store.ensure_tables(cat)
        sigs = rng.standard_normal((n, signature.SIG_DIM)).astype(np.float32)
        fam = rng.choice(n, n // 50, replace=False)  # 2%: a near copy of the photo before
        sigs[fam] = sigs[fam - 1] + 0.15 * rng.standard_normal((len(fam), signature.SIG_DIM))
        sigs /= np.linalg.norm(sigs, axis=1, keepdims=True)
        hashes = [f"{i:032x}" for i in range(n)]
        for i in rng.choice(n, n // 100, replace=False):  # 1%: byte-identical to the one before
            hashes[i] = hashes[i - 1]
        for lo in range(0, n, 5000):
            recs = [
                (str(root / f"{i // 1000:03d}" / f"p{i:06d}.jpg"), 1000 + i, i, hashes[i])
                + (640, 480, sigindex.SIGNED, None)
                for i in range(lo, min(n, lo + 5000))
            ]
            cat.write_signed(rid, recs)
            store.save_signatures(cat, {hashes[i]: sigs[i] for i in range(lo, min(n, lo + 5000))})
        print(f"catalog of {n} photos written in {time.perf_counter() - t0:.0f} s")

        def scan():
            t = time.perf_counter()
            pl = run(sigindex.scan_signatures(cat, data, verify=False))
            groups = dupes.group_all(pl)
            return pl, groups, time.perf_counter() - t

        t = time.perf_counter()
        exact = dupes.session.exact_scan(cat)  # what `dupes --tier exact` runs
        n_exact = len(dupes.group(exact, "exact"))
        t_exact = time.perf_counter() - t
        first, groups, t_first = scan()
        assert n_exact == sum(g.tier == "exact" for g in groups)
        reps = []
        for _ in range(3):
            again, g2, t = scan()
            reps.append(t)
            assert again.stats.get("cached") and len(again) == len(first) and len(g2) == len(groups)
        dupes.mark(cat, groups[0], dupes.DISTINCT)
        after, _, t_after = scan()
        assert not after.stats.get("cached")
        cat.close()
        print(f"{len(first.ids)} photos, {len(first)} pairs, {len(groups)} groups (all tiers)")
        print(f"first scan + grouping (no cache)          {t_first:.2f} s")
        print(f"exact tier only (`dupes --tier exact`)    {t_exact:.3f} s ({n_exact} groups)")
        print(
            f"repeated scan + grouping, nothing changed {statistics.median(reps):.3f} s (median of 3)"
        )
        print(f"scan after one decision (recomputed)      {t_after:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=3500)
    ap.add_argument("--synthetic", type=int, default=0, metavar="N")
    args = ap.parse_args()
    if args.synthetic:
        return synthetic(args.synthetic)
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

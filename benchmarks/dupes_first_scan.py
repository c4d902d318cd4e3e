"""First duplicate scan after indexing camera-size photos: signatures from indexing vs a re-read.

The "same photo" tier needs a DCT signature per distinct photo. Indexing now computes it
from the decode the model already needs, so the first scan reads no photo. This script
generates 12-24 MP JPEGs, indexes them, and prints
  the signature's cost inside indexing (ms per image, timed on the decoded images),
  the first scan's time (signatures already stored),
  and, as the baseline measured in the same run, the decode pass a scan needed before
  (`dupes.session.compute_signatures` reading every file again), with its img/s.

    python benchmarks/dupes_first_scan.py [--images 24] [--input-size 224]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import peak_rss_mb, table, weights_for_bench  # noqa: E402
from benchmarks.indexing import make_photos  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--input-size", type=int, default=224)
    args = ap.parse_args()

    from imgfinder.core import decode, dupes  # noqa: PLC0415
    from imgfinder.core.dupes import session, signature, store  # noqa: PLC0415
    from imgfinder.core.extract import ModelConfig  # noqa: PLC0415
    from imgfinder.core.library import Library, run  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="imgfinder-first-scan-") as tmp_name:
        tmp = Path(tmp_name)
        weights, described = weights_for_bench(tmp)
        files = make_photos(tmp / "photos", args.images)
        print(f"weights: {described}; {len(files)} JPEGs of 12-24 MP; input {args.input_size}")
        cfg = ModelConfig(weights=weights, device="cpu", input_size=args.input_size)
        lib = Library(tmp / "data", cfg, allow_download=False)
        t0 = time.perf_counter()
        summary = run(lib.index([tmp / "photos"]))
        t_index = time.perf_counter() - t0

        # the signature's share of indexing: on the very images the pipeline decodes
        imgs = [decode.open_image(f, min_size=args.input_size) for f in files[:8]]
        t0 = time.perf_counter()
        for _ in range(5):
            for im in imgs:
                signature.signature_of(im)
        sig_ms = (time.perf_counter() - t0) / (5 * len(imgs)) * 1000

        stages: list[str] = []
        t0 = time.perf_counter()
        pairs = run(dupes.scan(lib), lambda p: stages.append(p.stage))
        t_scan = time.perf_counter() - t0

        # baseline: what the first scan did before, reading every photo for its signature
        rows = lib.catalog.images([i for i, _ in lib.catalog.vector_rows(lib.model_id)])
        todo = {r.hash: r.path for r in rows.values()}
        lib.catalog.dupes.clear_signatures()
        t0 = time.perf_counter()
        recomputed = run(session.compute_signatures(lib.catalog, todo, cancel=threading.Event()))
        t_reread = time.perf_counter() - t0
        again = store.load_signatures(lib.catalog, todo)
        lib.close()

    n = summary.indexed
    rows_out = [
        {
            "step": "indexing (signatures included)",
            "seconds": f"{t_index:.2f}",
            "img/s": f"{n / t_index:.1f}",
            "note": f"signature {sig_ms:.2f} ms/img of {1000 * t_index / n:.0f} ms/img",
        },
        {
            "step": "first duplicate scan, signatures from indexing",
            "seconds": f"{t_scan:.2f}",
            "img/s": f"{n / t_scan:.1f}",
            "note": f"stages {sorted(set(stages))}; signatures computed "
            f"{pairs.stats['signatures_computed']}",
        },
        {
            "step": "baseline: signature re-read pass alone (before)",
            "seconds": f"{t_reread:.2f}",
            "img/s": f"{n / t_reread:.1f}",
            "note": f"{len(recomputed)} signatures; scan before = this + the scan above",
        },
    ]
    print(table(rows_out, list(rows_out[0])))
    assert len(again) == len(todo)
    speedup = (t_reread + t_scan) / t_scan
    print(
        f"first scan: {t_scan:.2f} s now vs {t_reread + t_scan:.2f} s with the re-read "
        f"({speedup:.1f}x); {len(pairs)} candidate pairs; peak RSS {peak_rss_mb():.0f} MB; per-image decode of the re-read "
        f"{1000 * t_reread / n:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Duplicate scan at library scale on synthetic data: seconds, pairs found, recall of planted pairs.

100k x 4096 float16 feature vectors (benchmarks/synthetic.py: clustered ReLU-like features)
with planted near-duplicates, plus synthetic DCT signatures (low frequencies dominant, as in
photos) whose planted copies are rotated/mirrored and noisy. The scan is the core's
`find_pairs`: k-NN of every vector through the LSH index's `query_batch`, the signature pairs
above the gate by one LSH self-join over all 8 orientations (sigpairs.py), scoring,
decisions filter. No N x N matrix is formed. Wall and CPU time are printed per pass.
The geometric check needs real files, so it is timed separately on generated photos and projected
from the number of candidate pairs (its results are cached by content hash: a re-scan only
checks new pairs).

    python benchmarks/dupes_scan.py [--n 100000] [--dim 4096] [--planted 2000]
        [--workers N] [--groups-out FILE] [--groups-baseline FILE] [--pair-recall FILE]

`--groups-out` writes every tier's groups (member paths) as JSON; `--groups-baseline` compares
this run's groups with such a file from another build of imgfinder on the same data (same
--n/--dim/--seed), e.g. the previous commit run from a checkout of it at the same time.
`--app-store` builds the index as the app holds it (vectors in a memory-mapped VectorStore
file, the index in the library's centred space, re-rank rows read through a CatalogSource)
instead of an index owning its float16 rows; its groups are not comparable with a run
without it (another search space).
`--pair-recall FILE` also runs the feature pass with an exact index (every photo's exact
k+1 nearest neighbours, in the index's own space: centred with `--app-store`, reading the
same CatalogSource; kept in FILE, .npz, and reused by later runs on the same data) and
prints the pair recall of the LSH pass against it: of the exact k-NN pairs, the share the
scan's feature pass found, all of them and those at or above the loosest similar setting
(minutes at 30k x 4096; the exact pass is O(N^2)).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import peak_rss_mb, table  # noqa: E402
from benchmarks.synthetic import SyntheticFeatures  # noqa: E402


def synthetic_signatures(n: int, rng: np.random.Generator) -> np.ndarray:
    """Photo-like DCT signatures: energy falling with frequency, DC removed, unit norm."""
    from imgfinder.core.dupes import signature  # noqa: PLC0415

    k = signature.COEFFS
    u = np.arange(k)
    decay = 1.0 / (1.0 + u[:, None] + u[None, :]) ** 1.2
    s = rng.standard_normal((n, k, k)).astype(np.float32) * decay
    s[:, 0, 0] = 0
    s = s.reshape(n, -1)
    return s / np.linalg.norm(s, axis=1, keepdims=True)


def orient_coefficients(c: np.ndarray, o: int) -> np.ndarray:
    """DCT coefficients of the photo turned by orientation o: transpose, odd-frequency signs."""
    k = np.arange(c.shape[0])
    if o & 4:
        c = c.T
    if o & 1:
        c = c * ((-1.0) ** k)[None, :]
    if o & 2:
        c = c * ((-1.0) ** k)[:, None]
    return c


def plant(base: np.ndarray, sigs: np.ndarray, m: int, rng: np.random.Generator):
    """Append m copies of random rows: features + small noise, signature re-oriented + noise."""
    from imgfinder.core.dupes import signature  # noqa: PLC0415

    src = rng.choice(len(base), m, replace=False)
    x = base[src].astype(np.float32)
    x += rng.normal(0, 0.12, x.shape).astype(np.float32)
    feats = np.maximum(x, 0).astype(np.float16)
    k = signature.COEFFS
    s = sigs[src].reshape(m, k, k)
    o = rng.integers(0, 8, m)
    s = np.stack([orient_coefficients(s[i], int(o[i])) for i in range(m)]).reshape(m, -1)
    s = s + rng.normal(0, 0.02, s.shape).astype(np.float32)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    return src, feats, s.astype(np.float32)


def verify_ms_per_pair(pairs: int = 40) -> float:
    """Time the geometric check (the scan's verifier: SIFT + RANSAC + aligned detail) on
    generated photo files, each photo in two pairs (decode included, like a first scan)."""
    import tempfile  # noqa: PLC0415

    from PIL import Image, ImageDraw  # noqa: PLC0415

    from imgfinder.core.dupes.geometry import GeometricVerifier  # noqa: PLC0415

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i in range(pairs + 1):
            im = Image.new("RGB", (1600, 1200), tuple(int(c) for c in rng.integers(0, 255, 3)))
            draw = ImageDraw.Draw(im)
            for _ in range(30):
                x, y = int(rng.integers(0, 1500)), int(rng.integers(0, 1100))
                draw.ellipse(
                    (x, y, x + 200, y + 150), fill=tuple(int(c) for c in rng.integers(0, 255, 3))
                )
            p = os.path.join(d, f"{i}.jpg")
            im.save(p, quality=90)
            files.append(p)
        v = GeometricVerifier()
        t = time.perf_counter()
        for i in range(pairs):
            v(files[i], files[i + 1], 0)
        return (time.perf_counter() - t) / pairs * 1000


def _knn_pairs(index, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, centred cosine) of the scan's feature pass (pairs._feature_pairs) on `index`."""
    import threading  # noqa: PLC0415
    from contextlib import nullcontext  # noqa: PLC0415

    from imgfinder.core.dupes import pairs as pairs_mod  # noqa: PLC0415

    gen = pairs_mod._feature_pairs(index, ids, k, threading.Event(), nullcontext())
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            a, b, cos, _ = stop.value
            return a, b, cos


def pair_recall(path: str, index, ids: np.ndarray, vectors: np.ndarray, k: int, args) -> None:
    """Print the LSH feature pass's pair recall against the same pass on an exact index."""
    from imgfinder.core.dupes import pairs as pairs_mod  # noqa: PLC0415
    from imgfinder.core.index import ExactIndex  # noqa: PLC0415

    n = len(ids)
    meta = np.array([n, args.dim, args.seed, args.planted, args.exact, k], np.int64)
    if args.app_store:  # the app's exact neighbours are those of its (centred) search space
        meta = np.append(meta, 1)
    got = None
    if Path(path).is_file():
        with np.load(path) as z:
            if np.array_equal(z["meta"], meta):
                got = z["a"], z["b"], z["cos"]
    if got is None:
        t0, c0 = time.perf_counter(), time.process_time()
        source = getattr(index, "_source", None) if args.app_store else None
        exact = ExactIndex(args.dim, model_id="synthetic", source=source)
        for lo in range(0, n, 8192):
            part = vectors[lo : lo + 8192] if source is None else source.get(ids[lo : lo + 8192])
            exact.add(ids[lo : lo + 8192], part)
        exact.build()
        got = _knn_pairs(exact, ids, k)
        np.savez(path, meta=meta, a=got[0], b=got[1], cos=got[2])
        print(
            f"exact feature pass: {time.perf_counter() - t0:.0f} s wall, "
            f"{time.process_time() - c0:.0f} s CPU (saved to {path})"
        )
    ea, eb, ecos = got
    la, lb, lcos = _knn_pairs(index, ids, k)
    exact_keys = np.unique(ea * n + eb)
    lsh_keys = np.unique(la * n + lb)
    loose = np.unique((ea * n + eb)[ecos >= pairs_mod.LOOSE_SIMILAR])
    found = np.isin(exact_keys, lsh_keys).mean() if len(exact_keys) else float("nan")
    found_loose = np.isin(loose, lsh_keys).mean() if len(loose) else float("nan")
    print(
        f"pair recall of the LSH feature pass vs exact {k}-NN: {found:.4f} of "
        f"{len(exact_keys)} pairs; {found_loose:.4f} of the {len(loose)} pairs with centred "
        f"cosine >= {pairs_mod.LOOSE_SIMILAR}"
    )


def app_index(args, ids: np.ndarray, vectors: np.ndarray):
    """The index as the app holds it (searchstate.py): vectors in a memory-mapped VectorStore
    file, the index in the library's centred space, reading its re-rank rows through a
    CatalogSource (no copy of the vectors in the index)."""
    import atexit  # noqa: PLC0415
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from imgfinder.core.centring import Centre  # noqa: PLC0415
    from imgfinder.core.index import LSHIndex  # noqa: PLC0415
    from imgfinder.core.searchstate import CatalogSource  # noqa: PLC0415
    from imgfinder.core.vectors import VectorStore  # noqa: PLC0415

    folder = tempfile.mkdtemp(prefix="imgfinder-scan-store-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # 820 MB at 100k: never left
    store = VectorStore(os.path.join(folder, "vectors.f16"), args.dim, "synthetic")
    rows, total = [], np.zeros(args.dim, np.float64)
    for lo in range(0, len(ids), 8192):
        x = vectors[lo : lo + 8192].astype(np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        total += x.sum(axis=0)
        rows.append(store.append(x))
    centre = Centre((total / len(ids)).astype(np.float32), len(ids), "synthetic")
    source = CatalogSource(store, zip(ids.tolist(), np.concatenate(rows).tolist()), centre)
    index = LSHIndex(args.dim, model_id="synthetic", seed=0, source=source)
    for lo in range(0, len(ids), 8192):
        index.add(ids[lo : lo + 8192], source.get(ids[lo : lo + 8192]))
    print(f"app store: {store.path} ({store.path.stat().st_size / 1e6:.0f} MB), centred index")
    return index


def _rss_now_mb() -> float:
    """Resident memory now (Linux /proc), to see what the allocator keeps after a job."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20  # as peak_rss_mb
    except (OSError, ValueError):
        return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="library size (incl. planted copies)")
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--planted", type=int, default=2000, help="near-duplicate copies planted")
    ap.add_argument("--exact", type=int, default=500, help="identical files planted")
    ap.add_argument("--k-features", type=int, default=None, help="default: the core's")
    ap.add_argument("--k-signatures", type=int, default=None, help="default: the core's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="threads of the feature k-NN (default: the core's)",
    )
    ap.add_argument(
        "--app-store",
        action="store_true",
        help="the index as the app holds it: VectorStore file + CatalogSource, centred",
    )
    ap.add_argument("--groups-out", default=None, help="write every tier's groups as JSON")
    ap.add_argument("--groups-baseline", default=None, help="compare groups with such a file")
    ap.add_argument(
        "--pair-recall", default=None, help="exact feature pairs (.npz, made if missing)"
    )
    args = ap.parse_args()
    from imgfinder.core.memtune import tune_allocator  # noqa: PLC0415

    tuned = tune_allocator()  # as the app's processes do (IMGFINDER_MALLOC_TUNE=0: not)
    print(f"allocator: {'the app policy (core/memtune.py)' if tuned else 'the default'}")
    if args.n - args.planted - args.exact < max(args.planted, args.exact):
        ap.error(  # copies are planted of distinct originals
            f"--n {args.n} leaves fewer originals than --planted {args.planted} / --exact "
            f"{args.exact} copies of them (at most a third of --n each)"
        )

    from imgfinder.core import dupes, imagesig  # noqa: PLC0415
    from imgfinder.core.dupes import pairs as pairs_mod  # noqa: PLC0415
    from imgfinder.core.index import LSHIndex  # noqa: PLC0415

    rng = np.random.default_rng(args.seed)
    n_base = args.n - args.planted - args.exact
    t0 = time.perf_counter()
    base = SyntheticFeatures(args.dim, seed=args.seed).sample(n_base, args.seed + 1)
    sigs = synthetic_signatures(n_base, rng)
    src, feats, psig = plant(base, sigs, args.planted, rng)
    exact_src = rng.choice(n_base, args.exact, replace=False)
    vectors = np.concatenate([base, feats, base[exact_src]])
    # as the app holds them: stored as float16 blobs, loaded as float32 (imagesig.from_blob,
    # session.compute_scan); the float64 of the generator made the signature pass 2.2x slower
    signatures = np.concatenate([sigs, psig, sigs[exact_src]])
    signatures = signatures.astype(imagesig.SIG_DTYPE).astype(np.float32)
    del base
    n = len(vectors)
    ids = np.arange(1, n + 1, dtype=np.int64)
    hashes = [f"{i:032x}" for i in range(n_base + args.planted)]
    hashes += [hashes[i] for i in exact_src]
    paths = [f"/photos/{i}.jpg" for i in range(n)]
    print(
        f"generated {n} vectors x {args.dim} (float16) in {time.perf_counter() - t0:.1f} s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )

    t0 = time.perf_counter()
    if args.app_store:
        index = app_index(args, ids, vectors)
    else:
        index = LSHIndex(args.dim, model_id="synthetic", seed=0)
        for lo in range(0, n, 8192):
            index.add(ids[lo : lo + 8192], vectors[lo : lo + 8192])
    index.build()
    t_build = time.perf_counter() - t0
    print(f"LSH index built in {t_build:.1f} s (not part of the scan: the library keeps it)")

    rss_before = peak_rss_mb()
    k_f = args.k_features or pairs_mod.K_FEATURES
    k_s = args.k_signatures or pairs_mod.K_SIGNATURES
    print(
        f"k: {k_f} feature neighbours, {k_s} signature neighbours per photo; "
        f"{args.workers or pairs_mod.KNN_THREADS} k-NN thread(s)"
    )
    gen = pairs_mod.find_pairs(
        index,
        ids,
        paths,
        hashes,
        signatures,
        verifier=None,
        k_features=k_f,
        k_signatures=k_s,
        knn_threads=args.workers or pairs_mod.KNN_THREADS,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            pl = stop.value
            break
    t_scan = time.perf_counter() - t0
    cpu_scan = time.process_time() - c0
    t0 = time.perf_counter()
    copy_groups = dupes.group(pl, "exact")
    similar = dupes.group(pl, "similar", 0.7)
    t_group = time.perf_counter() - t0

    pos = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(pl.a, pl.b))}
    planted = [(int(s), n_base + j) for j, s in enumerate(src)]
    found_feat = found_sig = found_any = 0
    sims = []
    for a, b in planted:
        i = pos.get((min(a, b), max(a, b)))
        if i is None:
            continue
        ok_f = pl.similar[i] >= dupes.DEFAULT_THRESHOLDS["similar"]
        ok_s = pl.sig[i] >= pairs_mod.SIG_GATE
        found_feat += ok_f
        found_sig += ok_s
        found_any += ok_f or ok_s
        sims.append(pl.similar[i])
    exact_found = sum(len(g) - 1 for g in copy_groups)
    ms = verify_ms_per_pair()
    cand = pl.stats["verify_candidates"]
    gate_only = pl.stats.get("feature_gate_pairs", cand)
    rows = [
        {"what": "scan (feature k-NN + signature pairs + scoring)", "value": f"{t_scan:.1f} s"},
        {"what": "  CPU time of the scan (all threads)", "value": f"{cpu_scan:.1f} s"},
        {
            "what": "  of which feature k-NN (query_batch), wall / CPU",
            "value": f"{pl.stats['features_s']:.1f} / {pl.stats['features_cpu_s']:.1f} s",
        },
        {
            "what": "  of which signature pairs, wall / CPU",
            "value": f"{pl.stats['signatures_s']:.1f} / {pl.stats['signatures_cpu_s']:.1f} s",
        },
        {"what": "candidate pairs kept", "value": len(pl)},
        {"what": "pairs the feature gate alone would check", "value": gate_only},
        {"what": "pairs for the geometric check (first scan)", "value": cand},
        {"what": "geometric check, measured per pair (decode incl.)", "value": f"{ms:.1f} ms"},
        {
            "what": "projected first-scan geometric checks (2 threads)",
            "value": f"{cand * ms / 2000:.0f} s",
        },
        {"what": "group() exact + similar", "value": f"{t_group * 1000:.0f} ms"},
        {
            "what": "planted copies found by features (>= similar default)",
            "value": f"{found_feat / len(planted):.3f}",
        },
        {
            "what": "planted copies found by signatures (>= gate)",
            "value": f"{found_sig / len(planted):.3f}",
        },
        {"what": "planted copies found (either)", "value": f"{found_any / len(planted):.3f}"},
        {
            "what": "planted identical files grouped as exact",
            "value": f"{exact_found}/{args.exact}",
        },
        {
            "what": "median centred cosine of planted pairs",
            "value": f"{float(np.median(sims)) if sims else float('nan'):.3f}",
        },
        {"what": "similar-tier groups at 0.70", "value": len(similar)},
        {"what": "peak RSS before the scan (data + index)", "value": f"{rss_before:.0f} MB"},
        {"what": "peak RSS after the scan", "value": f"{peak_rss_mb():.0f} MB"},
        {"what": "RSS now (the scan's temporaries freed)", "value": f"{_rss_now_mb():.0f} MB"},
    ]
    print(table(rows, ["what", "value"]))
    groups = {tier: sorted(sorted(g.paths) for g in dupes.group(pl, tier)) for tier in dupes.TIERS}
    if args.groups_out:
        Path(args.groups_out).write_text(json.dumps(groups))
    if args.groups_baseline:
        base_groups = json.loads(Path(args.groups_baseline).read_text())
        for tier in dupes.TIERS:
            mine = {tuple(g) for g in groups[tier]}
            theirs = {tuple(g) for g in base_groups.get(tier, [])}
            print(
                f"{tier} groups: {len(mine)} now, {len(theirs)} in the baseline, "
                f"{len(mine & theirs)} identical, {len(mine - theirs)} only now, "
                f"{len(theirs - mine)} only in the baseline"
            )
    if args.pair_recall:
        pair_recall(args.pair_recall, index, ids, vectors, k_f, args)
    load = os.getloadavg()[0]
    print(f"load average now {load:.1f} on {os.cpu_count()} cores (other jobs share them)")
    if args.n == 100_000:  # the goal is stated at this size only
        print(
            f"goal: scan of 100k in <= 30 s (wall {t_scan:.1f} s, CPU {cpu_scan:.1f} s):",
            "met"
            if t_scan <= 30
            else "MISSED" + (" (CPU time meets it)" if cpu_scan <= 30 else ""),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

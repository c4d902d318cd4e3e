"""The retrieval papers' other methods with real weights: CBAM, GeM, αQE, DBA + αQE,
diffusion and local (SIFT + RANSAC) verification, on three collections.

Collections (EfficientNet-Lite0, ImageNet weights, 224 px, centred exact cosine search):
- flowers A / flowers B: the 960 flower photos of ../shared/data split into two disjoint
  halves of classes (0-5 and 6-11), every photo a query against the rest of its half;
- instances: an instance-level set generated here (never committed) from 40 of the flower
  photos: a folder per photo holding the photo itself (the query: `eval --queries first`)
  and 7 photographing-like views of it (crop, perspective, rotation, exposure, blur + JPEG,
  occluding patches, and all of these at once).

Every figure comes from `imgfinder eval`'s own code path: the vectors `imgfinder index`
stored (Library.index into one data dir per model), the collection's own mean for centring
(as a library of only that collection would have), `cli.eval_cmd.eval_reranker` and
`core.evaluate.evaluate_vectors`. Query latency: the same Reranker over seeded synthetic
vectors (benchmarks/synthetic.py, D = 2560 as Lite0's) in an exact index of 1k and 100k
rows, median over 20 queries; local verification's latency is measured on the photos
(top 20 per query, SIFT features decoded cold, as a one-shot `imgfinder search` would).

Local verification matches each query with its top 20 (SIFT on both, RANSAC): on the
class-level halves its rows use every 8th photo as a query (--verify-every), the others
every photo; the instance set always uses all 40 queries.

Usage: python benchmarks/rerank.py [--dataset DIR] [--work DIR] [--skip-latency]
       [--skip-reference] [--only ROW ...] [--verify-every N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_DATASET, dataset_files, table  # noqa: E402

MODELS = {"eca": ("eca", "max"), "cbam": ("cbam", "max"), "gem": ("eca", "gem")}
INSTANCES = 40
VIEWS = ("crop", "perspective", "rotation", "exposure", "blur", "occlusion", "all")


# -- the instance set ---------------------------------------------------------------------------
def _perspective_coeffs(dst, src):
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.asarray(a, np.float64), np.asarray(src, np.float64).ravel())


def photographed(img, view: str, rng: np.random.Generator):
    """One photographing-like view of a photo."""
    from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

    w, h = img.size
    out = img
    if view in ("crop", "all"):
        f = rng.uniform(0.6, 0.8)
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = out.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BICUBIC)
    if view in ("perspective", "all"):
        j = lambda: rng.uniform(0.0, 0.12)  # noqa: E731
        src = [(j() * w, j() * h), ((1 - j()) * w, j() * h), ((1 - j()) * w, (1 - j()) * h),
               (j() * w, (1 - j()) * h)]  # fmt: skip
        coeffs = _perspective_coeffs([(0, 0), (w, 0), (w, h), (0, h)], src)
        out = out.transform((w, h), Image.Transform.PERSPECTIVE, coeffs.tolist(),
                            Image.Resampling.BICUBIC)  # fmt: skip
    if view in ("rotation", "all"):
        angle = float(rng.uniform(12, 30) * rng.choice([-1, 1]))
        out = out.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False)
    if view in ("exposure", "all"):
        out = ImageEnhance.Brightness(out).enhance(float(rng.choice([0.55, 1.6])))
        out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.7, 1.3)))
    if view in ("blur", "all"):
        out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 2.5))))
    if view in ("occlusion", "all"):
        out = out.copy()
        draw = ImageDraw.Draw(out)
        for _ in range(3):
            pw, ph = int(w * rng.uniform(0.15, 0.3)), int(h * rng.uniform(0.15, 0.3))
            x, y = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
            draw.rectangle(
                (x, y, x + pw, y + ph), fill=tuple(int(c) for c in rng.integers(0, 255, 3))
            )
    return out


def make_instances(files: list[str], root: Path, n: int = INSTANCES) -> Path:
    """A folder per photo: 00_photo.jpg (the query) and one file per view."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    picks = files[:: max(1, len(files) // n)][:n]
    for i, f in enumerate(picks):
        d = root / f"instance_{i:02d}"
        if d.is_dir() and len(list(d.iterdir())) == 1 + len(VIEWS):
            continue
        d.mkdir(exist_ok=True)
        img = Image.open(f).convert("RGB")
        img.thumbnail((512, 512), Image.Resampling.LANCZOS)
        img.save(d / "00_photo.jpg", quality=95)
        rng = np.random.default_rng(i)
        for j, view in enumerate(VIEWS, 1):
            photographed(img, view, rng).save(d / f"{j:02d}_{view}.jpg", quality=85)
    return root


# -- vectors ------------------------------------------------------------------------------------
def library_vectors(work: Path, model: str, roots: list[Path]) -> tuple[dict[str, np.ndarray], str]:
    """path -> stored vector, indexed by `imgfinder index`'s pipeline into work/<model>."""
    from imgfinder.core.extract import ModelConfig
    from imgfinder.core.library import Library, run

    att, pool = MODELS[model]
    cfg = ModelConfig(backbone="efficientnet-lite0", attention=att, pooling=pool, device="cpu")
    lib = Library(work / model, cfg, index_backend="exact")
    try:
        run(lib.index([str(r) for r in roots]), None)
        pairs = lib.catalog.vector_rows(lib.model_id)
        rows = lib.catalog.images(i for i, _ in pairs)
        vecs = lib.store().get(np.asarray([r for _, r in pairs])).astype(np.float32)
        return {rows[i].path: v for (i, _), v in zip(pairs, vecs)}, lib.model_id
    finally:
        lib.close()


def collection(vectors: dict[str, np.ndarray], files: list[str], labels: list[str]):
    """(ids, centred vectors, labels, paths) of one collection, centred on its own mean."""
    from imgfinder.core.centring import estimate

    keep = [(f, c) for f, c in zip(files, labels) if f in vectors]
    paths = [f for f, _ in keep]
    raw = np.stack([vectors[f] for f in paths])
    ids = np.arange(len(paths), dtype=np.int64)
    centre = estimate(lambda i: raw[i], ids, "bench")
    return ids, centre.apply(raw), [c for _, c in keep], paths


def evaluate(coll, methods: tuple[str, ...], first: bool, verify_every: int = 1) -> dict:
    from imgfinder.cli.eval_cmd import eval_reranker
    from imgfinder.core.evaluate import evaluate_vectors, first_of_each
    from imgfinder.core.index import ExactIndex
    from imgfinder.core.rerank import RerankOptions

    ids, space, labels, paths = coll
    index = ExactIndex(dim=space.shape[1])
    index.add(ids, space)
    index.build()
    reranker, extra = eval_reranker(RerankOptions(methods=methods), index, ids, space, paths)
    queries = first_of_each(labels, paths) if first else None
    if queries is None and "verify" in methods and verify_every > 1:
        queries = list(range(0, len(ids), verify_every))
    t = time.perf_counter()
    rep = evaluate_vectors(
        ids, space, labels, index, queries=queries, reranker=reranker, paths=paths
    )
    out = {"map": rep.map, "p10": rep.precision_at["10"], "queries": rep.queries,
           "eval_s": time.perf_counter() - t, "query_ms": rep.query_ms_median}  # fmt: skip
    out.update(extra)
    return out


def library_dba_aqe(coll, first: bool) -> dict:
    """Reference: DBA over the whole collection, stored (what a database-side DBA would
    keep), then αQE over those vectors. Not a product option; it says what on-the-fly DBA
    over the shortlist gives up."""
    from imgfinder.core.evaluate import evaluate_vectors, first_of_each
    from imgfinder.core.index import ExactIndex
    from imgfinder.core.rerank import Reranker, RerankOptions, database_augment

    ids, space, labels, paths = coll
    t = time.perf_counter()
    dba = database_augment(ids, lambda i: space[i], _knn(space))
    offline = time.perf_counter() - t
    index = ExactIndex(dim=space.shape[1])
    index.add(ids, dba)
    index.build()
    rr = Reranker(RerankOptions(methods=("aqe",)), index.query, lambda i: dba[i])
    queries = first_of_each(labels, paths) if first else None
    rep = evaluate_vectors(ids, space, labels, index, queries=queries, reranker=rr, paths=paths)
    return {"map": rep.map, "p10": rep.precision_at["10"], "offline_s": offline}


def _knn(space: np.ndarray):
    def knn(vecs: np.ndarray, k: int):
        sims = vecs @ space.T
        top = np.argsort(-sims, axis=1)[:, :k]
        return top, np.take_along_axis(sims, top, axis=1)

    return knn


# -- latency ------------------------------------------------------------------------------------
def latency(methods_list: list[tuple[str, ...]], sizes=(1_000, 100_000), dim=2560) -> dict:
    """Median ms per query (k = 50, 20 queries) of each re-ranking over synthetic vectors."""
    from benchmarks.synthetic import SyntheticFeatures
    from imgfinder.core.index import ExactIndex
    from imgfinder.core.rerank import Diffusion, Reranker, RerankOptions

    model = SyntheticFeatures(dim, seed=0)
    out: dict = {}
    for n in sizes:
        base = model.sample(n, 1).astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        base -= base.mean(axis=0)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        queries = base[:: max(1, n // 20)][:20]
        index = ExactIndex(dim=dim)
        index.add(np.arange(n), base)
        index.build()
        for methods in methods_list:
            if "verify" in methods:
                continue
            diffusion = None
            if "diffusion" in methods:
                if n > 10_000:  # offline build at 100k: see diffusion_offline below
                    out[(methods, n)] = None
                    continue
                diffusion = Diffusion(np.arange(n), base)
            rr = Reranker(RerankOptions(methods=methods), index.query, lambda i, b=base: b[i],
                          diffusion=diffusion)  # fmt: skip
            times = []
            for q in queries:
                t = time.perf_counter()
                rr.rank(q, 50)
                times.append((time.perf_counter() - t) * 1000)
            out[(methods, n)] = statistics.median(times)
        del base, index
    return out


def diffusion_offline(sizes=(1_000, 10_000), dim=2560) -> dict[int, float]:
    from benchmarks.synthetic import SyntheticFeatures
    from imgfinder.core.rerank import Diffusion

    model = SyntheticFeatures(dim, seed=0)
    out = {}
    for n in sizes:
        base = model.sample(n, 1).astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        t = time.perf_counter()
        Diffusion(np.arange(n), base)
        out[n] = time.perf_counter() - t
    return out


def verify_latency(coll, queries: int = 10) -> float:
    """Median ms of local verification of a query's top 20, features decoded cold."""
    from imgfinder.core.rerank import LocalVerifier

    _, _, labels, paths = coll
    times = []
    for q in range(0, len(paths), max(1, len(paths) // queries))[:queries]:
        ver = LocalVerifier()  # a fresh cache: a one-shot search
        others = [p for j, p in enumerate(paths) if j != q][:20]
        t = time.perf_counter()
        for p in others:
            ver.inliers(paths[q], p)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(DEFAULT_DATASET))
    ap.add_argument("--work", default="/tmp/imgfinder-bench-rerank")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument(
        "--verify-every",
        type=int,
        default=8,
        help="on the class-level halves, local verification's rows use every Nth photo as a "
        "query (default 8: 60 of 480; each query matches 20 photos); the instance set uses all",
    )
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--only", nargs="*", help="only these rows (by name), e.g. 'diffusion'")
    args = ap.parse_args()
    dataset, work = Path(args.dataset), Path(args.work)
    files, labels = dataset_files(dataset)
    classes = sorted(set(labels))
    inst_root = make_instances(files, work / "instances")
    inst_files, inst_labels = dataset_files(inst_root)
    half_a = set(classes[: len(classes) // 2])
    colls_spec = {
        "flowers A": ([f for f, c in zip(files, labels) if c in half_a],
                      [c for c in labels if c in half_a], False),
        "flowers B": ([f for f, c in zip(files, labels) if c not in half_a],
                      [c for c in labels if c not in half_a], False),
        "instances": (inst_files, inst_labels, True),
    }  # fmt: skip
    vectors, model_ids = {}, {}
    for model in MODELS:
        t = time.perf_counter()
        vectors[model], model_ids[model] = library_vectors(work, model, [dataset, inst_root])
        print(f"{model}: {model_ids[model]} ({time.perf_counter() - t:.0f} s)", flush=True)
    rows_spec = [
        ("default (fused ECA)", "eca", ()),
        ("CBAM (untrained)", "cbam", ()),
        ("GeM p=3 (second branch)", "gem", ()),
        ("αQE", "eca", ("aqe",)),
        ("DBA + αQE", "eca", ("dba+aqe",)),
        ("diffusion", "eca", ("diffusion",)),
        ("local verification", "eca", ("verify",)),
        ("DBA + αQE + verification", "eca", ("dba+aqe", "verify")),
        ("GeM + DBA + αQE + verification", "gem", ("dba+aqe", "verify")),
        ("diffusion + verification", "eca", ("diffusion", "verify")),
    ]
    if args.only:
        rows_spec = [r for r in rows_spec if r[0] in args.only]
    results: dict = {}
    for name, model, methods in rows_spec:
        for cname, (cf, cl, first) in colls_spec.items():
            coll = collection(vectors[model], cf, cl)
            r = evaluate(coll, methods, first, args.verify_every)
            results[(name, cname)] = r
            print(f"{name:32} {cname:10} mAP {r['map']:.4f} P@10 {r['p10']:.4f} "
                  f"({r['queries']} queries, {r['eval_s']:.0f} s)", flush=True)  # fmt: skip
    for cname, (cf, cl, first) in colls_spec.items() if not args.skip_reference else ():
        r = library_dba_aqe(collection(vectors["eca"], cf, cl), first)
        results[("library-wide DBA + αQE (reference)", cname)] = r
        print(f"library-wide DBA + αQE {cname:10} mAP {r['map']:.4f} P@10 {r['p10']:.4f} "
              f"(offline {r['offline_s']:.1f} s)", flush=True)  # fmt: skip
    lat = {}
    if not args.skip_latency:
        lat = latency(sorted({m for _, _, m in rows_spec}))
        ver_ms = verify_latency(collection(vectors["eca"], *colls_spec["instances"][:2]))
        diff_off = diffusion_offline()
        print(f"diffusion offline build: {diff_off} s (1k, 10k synthetic vectors)")
        print(f"local verification of the top 20, cold: {ver_ms:.0f} ms per query")
    table_rows = []
    reference = [] if args.skip_reference else [("library-wide DBA + αQE (reference)", "", None)]
    for name, _model, methods in [*rows_spec, *reference]:
        row = {"method": name}
        for cname in colls_spec:
            r = results[(name, cname)]
            row[cname] = f"{r['map']:.3f} / {r['p10']:.3f}"
        if lat and methods is not None:
            for n in (1_000, 100_000):
                if "verify" in methods:
                    base = lat.get((tuple(m for m in methods if m != "verify"), n))
                    row[f"ms @{n // 1000}k"] = f"{base + ver_ms:.0f}" if base is not None else ""
                else:
                    v = lat.get((methods, n))
                    row[f"ms @{n // 1000}k"] = "offline" if v is None else f"{v:.1f}"
        table_rows.append(row)
    cols = ["method", *colls_spec] + (["ms @1k", "ms @100k"] if lat else [])
    print("\nmAP / P@10 (EfficientNet-Lite0 ImageNet weights, 224 px, centred exact search)")
    print(table(table_rows, cols))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "models": model_ids,
            "results": {f"{a} | {b}": v for (a, b), v in results.items()},
            "latency_ms": {f"{','.join(m) or 'none'} @{n}": v for (m, n), v in lat.items()},
        }, indent=1, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

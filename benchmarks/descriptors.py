"""Which descriptor to store: fused ECA vs plain average, max and GeM pooling, each raw,
centred (the library's mean subtracted) and PCA-whitened at two D', with pretrained weights.

Every photo of a folder-per-class set (default: the 960 flower photos of ../shared/data)
is a query against all the others (query excluded, full ranking): mAP and P@10 of exact
cosine search. The maps come from the product's own path (decode, preprocessing,
`Extractor.forward_maps`), so only the pooling differs between rows. Whitening and
centring are learned from the same photos without labels, as `imgfinder whiten` learns
them from a library. Then `imgfinder eval` runs through the CLI with the LSH, Annoy and
exact backends, so the index's mAP is compared with exact search's in the same run.

Usage: python benchmarks/descriptors.py [--dataset DIR] [--backbone NAME] [--size 224]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_DATASET, dataset_files, table  # noqa: E402


def pooled(files, backbone: str, size: int, batch: int = 32) -> tuple[dict[str, np.ndarray], str]:
    import torch.nn.functional as F

    from imgfinder.core.extract import Extractor, ModelConfig

    ex = Extractor(ModelConfig(backbone=backbone, device="cpu", input_size=size))
    out: dict[str, list] = {"fused (default)": [], "avg": [], "max": [], "GeM p=3": []}
    for i in range(0, len(files), batch):
        maps = ex.forward_maps([ex.load_array(f) for f in files[i : i + batch]])
        fm = maps.fmap
        out["fused (default)"].append(maps.descriptor.numpy())
        out["avg"].append(F.normalize(fm.mean(dim=(2, 3)), dim=1).numpy())
        out["max"].append(F.normalize(fm.amax(dim=(2, 3)), dim=1).numpy())
        gem = fm.clamp_min(1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
        out["GeM p=3"].append(F.normalize(gem, dim=1).numpy())
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}, ex.model_id


def ranking_quality(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """mAP over the full ranking and P@10, every vector a query, the query excluded."""
    from imgfinder.core.evaluate import average_precision

    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    aps, p10 = [], []
    for i in range(len(x)):
        order = np.argsort(-sims[i], kind="stable")[:-1]
        rel = labels[order] == labels[i]
        aps.append(average_precision(rel, int(rel.sum())))
        p10.append(float(rel[:10].mean()))
    return float(np.mean(aps)), float(np.mean(p10))


def variants(vecs: np.ndarray, dims: list[int]) -> dict[str, np.ndarray]:
    from imgfinder.core.whiten import learn_whitening

    x = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    out = {"raw": x, "centred": x - x.mean(axis=0)}
    for d in dims:
        w = learn_whitening(x, min(d, len(x) - 1, x.shape[1]))
        out[f"whitened D'={w.dim_out}"] = w.apply(x)
    return out


def cli_eval(dataset: Path, backbone: str, size: int, backend: str) -> dict:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    with tempfile.TemporaryDirectory(prefix="imgfinder-bench-") as tmp:
        cmd = [
            sys.executable, "-m", "imgfinder", "--data-dir", tmp, "--backbone", backbone,
            "--device", "cpu", "--input-size", str(size), "--index", backend, "--offline",
            "eval", str(dataset), "--json",
        ]  # fmt: skip
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        out = json.loads(res.stdout)
        out["wall_s"] = time.perf_counter() - t
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--dims", type=int, nargs=2, default=[128, 512])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-cli", action="store_true", help="skip the imgfinder eval runs")
    args = ap.parse_args()
    if not args.dataset.is_dir():
        print(f"no dataset at {args.dataset}; pass --dataset DIR (a folder per class)")
        return 2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    files, labels = dataset_files(args.dataset)
    print(
        f"{len(files)} photos, {len(set(labels))} classes from {args.dataset}; backbone "
        f"{args.backbone} (ImageNet weights), input {args.size}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads"
    )
    t = time.perf_counter()
    pools, model_id = pooled(files, args.backbone, args.size)
    print(f"model {model_id}; maps of every photo in {time.perf_counter() - t:.1f} s")
    rows, best = [], {}
    labels = np.asarray(labels)
    for name, vecs in pools.items():
        for post, v in variants(vecs, args.dims).items():
            m, p = ranking_quality(v, labels)
            rows.append({"descriptor": name, "post": post, "dim": v.shape[1],
                         "mAP": f"{m:.4f}", "P@10": f"{p:.4f}"})  # fmt: skip
            best[(name, post)] = m
    print(table(rows, ["descriptor", "post", "dim", "mAP", "P@10"]))
    base = best[("avg", "raw")]
    default = best[("fused (default)", "centred")]  # what imgfinder searches: fused, centred
    print(
        f"imgfinder's default (fused descriptor, centred search) vs plain average pooling: "
        f"{default:.4f} vs {base:.4f} ({default - base:+.4f}); fused raw "
        f"{best[('fused (default)', 'raw')]:.4f}"
    )
    if args.no_cli:
        return 0
    rows = []
    for backend in ("lsh", "annoy", "exact"):
        r = cli_eval(args.dataset, args.backbone, args.size, backend)
        rows.append({
            "index": backend, "mAP": f"{r['map']:.4f}", "exact mAP": f"{r['exact_map']:.4f}",
            "ratio": f"{r['map_ratio']:.4f}", "P@10": f"{r['precision_at']['10']:.4f}",
            "recall@10 vs exact": f"{r['index_recall_at_10']:.3f}",
            "query ms (median)": f"{r['query_ms_median']:.2f}", "wall s": f"{r['wall_s']:.0f}",
        })  # fmt: skip
    print("imgfinder eval (the CLI: default descriptor, centred search, a fresh data dir):")
    print(table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

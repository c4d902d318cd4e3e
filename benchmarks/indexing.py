"""Indexing throughput per backbone: model-only vs end-to-end vs a naive pipeline, at two sizes.

Generates 12-24 MP JPEGs, then for each input size prints
  model-only img/s   (pre-decoded uint8 batches straight into the model)
  end-to-end img/s   (Library.index: scan, read, hash, DCT-scaled decode in threads, model, store)
  naive img/s        (full PIL decode + resize, eager fp32 NCHW, one image after another decoded)
and the ratios the issue sets as goals (e2e >= 0.8 x model-only, >= 1.5 x naive).

    python benchmarks/indexing.py [--images 24] [--sizes 224 112] [--device auto]
                                  [--backbones resnet50 efficientnet-lite0]

ResNet50 runs with seeded random-init weights unless IMGFINDER_WEIGHTS is set (speed does not
depend on the values); EfficientNet-Lite0 with its installed ImageNet weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import peak_rss_mb, table, weights_for_bench  # noqa: E402


def make_photos(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sizes = [(4240, 2832), (5184, 3456), (6000, 4000)]  # 12, 18, 24 MP
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BILINEAR)
        noise = Image.effect_noise((w, h), 40).convert("RGB")
        img = Image.blend(img, noise, 0.25)
        p = folder / f"IMG_{i:04d}.jpg"
        img.save(p, quality=90)
        out.append(p)
    return out


def naive_rate(files: list[Path], model, size: int, batch: int) -> float:
    """Full decode, PIL resize, fp32 NCHW: what a straightforward script would do."""
    import torch
    from PIL import Image

    pre = model.spec.preprocessing
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    t = time.perf_counter()
    buf = []
    with torch.no_grad():
        for f in files:
            img = Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
            buf.append((x - mean) / std)
            if len(buf) == batch:
                model(torch.stack(buf))
                buf = []
        if buf:
            model(torch.stack(buf))
    return len(files) / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 112])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--backbones", nargs="+", default=["resnet50", "efficientnet-lite0"])
    ap.add_argument("--workdir", default=None, help="keep generated photos here between runs")
    args = ap.parse_args()

    import torch

    from imgfinder.core.extract import Extractor, ModelConfig, device_description, load_model
    from imgfinder.core.library import Library, run

    work = Path(args.workdir or tempfile.mkdtemp(prefix="imgfinder-bench-"))
    photos = work / "photos"
    files = sorted(photos.glob("*.jpg"))
    if len(files) < args.images:
        t = time.perf_counter()
        files = make_photos(photos, args.images)
        print(f"generated {len(files)} photos (12-24 MP) in {time.perf_counter() - t:.0f} s")
    files = files[: args.images]
    r50_weights, desc = weights_for_bench(work)
    print(f"resnet50 weights: {desc}; efficientnet-lite0: its installed ImageNet weights")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    rows = []
    for backbone, size in ((b, s) for b in args.backbones for s in args.sizes):
        weights = r50_weights if backbone == "resnet50" else None
        cfg = ModelConfig(weights=weights, device=args.device, input_size=size, backbone=backbone)
        ex = Extractor(cfg)
        arrays = [ex.load_array(f) for f in files[: min(len(files), ex.batch_size * 2)]]
        ex.embed_arrays(arrays[: ex.batch_size])  # warm-up
        n_model = 0
        t = time.perf_counter()
        while time.perf_counter() - t < 10 or n_model < len(files):
            ex.embed_arrays(arrays)
            n_model += len(arrays)
        model_rate = n_model / (time.perf_counter() - t)

        lib = Library(work / f"data-{size}-{time.time_ns()}", cfg, index_backend="exact")
        lib._extractor = ex  # same loaded model, not timed twice
        t = time.perf_counter()
        summary = run(lib.index([photos]))
        e2e_rate = summary.indexed / (time.perf_counter() - t)
        lib.close()

        naive, _, _ = load_model(cfg)  # float32, eager, NCHW
        naive_files = files[: max(ex.batch_size, len(files) // 2)]
        naive_r = naive_rate(naive_files, naive, size, ex.batch_size)
        rows.append(
            {
                "backbone": backbone,
                "input": size,
                "device": device_description(ex.device),
                "model-only img/s": f"{model_rate:.1f}",
                "end-to-end img/s": f"{e2e_rate:.1f}",
                "naive img/s": f"{naive_r:.1f}",
                "e2e/model": f"{e2e_rate / model_rate:.2f} (goal >= 0.8)",
                "e2e/naive": f"{e2e_rate / naive_r:.2f} (goal >= 1.5)",
            }
        )
    print(table(rows, list(rows[0])))
    print(f"peak RSS {peak_rss_mb():.0f} MB; photos: {len(files)} in {photos}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Retrieval on unseen classes before/after ArcFace fine-tuning, with and without PCA whitening.

Protocol: train on 8 of the 12 flower classes (alphabetically first), evaluate on the
other 4 (never seen in training) with exact search (`evaluate_vectors`), the same
backbone weights before and after. Whitening is learned without labels on the
*training* classes' images (clean view + the cached augmented views), and, for
comparison, transductively on the unlabelled eval images. Eval descriptors come from
one fp32 trunk pass (layer3 kept) re-fused with each trained head/layer4; a check
re-embeds some eval images through `Extractor` with the saved files (the product path).

    python benchmarks/training.py [--dataset DIR] [--size 112] [--views 4]
        [--epochs-eca 30] [--epochs-layer4 8] [--layer4 auto:1e-4 frozen:1e-4] [--dims 256 1024]

Each --layer4 run is BATCHNORM:LR (batchnorm auto/frozen/train, layer4 learning rate);
its unseen-class mAP is also printed after every epoch (the learning curve). A control
row re-estimates layer4's BatchNorm statistics on the training images without training,
to separate what the statistics alone do from what ArcFace does.

IMGFINDER_WEIGHTS is honoured; without it a seeded random-init ResNet50 is used.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import peak_rss_mb, table, weights_for_bench  # noqa: E402

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared/data/oxford-flowers17-12class"


def split_classes(
    dataset: Path, n_train: int, root: Path, per_class: int | None
) -> tuple[Path, list[str], list[str]]:
    """A folder of symlinks to the training classes' images (no image is copied)."""
    classes = sorted(p.name for p in dataset.iterdir() if p.is_dir())
    train, held = classes[:n_train], classes[n_train:]
    link_root = root / "train-classes"
    for c in train:
        (link_root / c).mkdir(parents=True)
        for f in sorted((dataset / c).glob("*.jpg"))[:per_class]:
            os.symlink(f, link_root / c / f.name)
    return link_root, train, held


def eval_layer3(files: list[Path], model, size: int, batch: int = 32):
    """fp32 layer3 maps of the clean eval images (the extractor's decode and squash)."""
    import torch

    from imgfinder.core import decode
    from imgfinder.core.augment import squash
    from imgfinder.core.traincache import normalise

    out = []
    with torch.inference_mode():
        for i in range(0, len(files), batch):
            arrays = [
                squash(decode.open_image(f, min_size=size), size) for f in files[i : i + batch]
            ]
            x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
            x = normalise(x, torch.device("cpu"), model.spec.preprocessing)
            out.append(model.trunk.frozen(x).contiguous())
    return torch.cat(out)


def descriptors(l3, layer4, eca, batch: int = 64) -> np.ndarray:
    import torch

    from imgfinder.core.train import pooled_descriptor

    out = []
    with torch.inference_mode():
        for i in range(0, len(l3), batch):
            fmap = layer4(l3[i : i + batch].contiguous(memory_format=torch.channels_last)).float()
            out.append(pooled_descriptor(eca, fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))))
    return torch.cat(out).numpy()


def clean_layer3(cache):
    """The cached layer3 maps of the training images' clean views (view 0)."""
    import torch

    idx = cache.valid_indices()
    return torch.from_numpy(cache.layer3_rows(idx, np.zeros(len(idx), np.int64))).float()


def recalibrated(layer4, l3_train, batch: int = 32):
    """A copy of layer4 in eval mode with BatchNorm statistics re-estimated over `l3_train`,
    by the function Trainer.calibrate_batchnorm uses at the end of a run."""
    import copy

    import torch

    from imgfinder.core.train import reestimate_batchnorm

    layer4 = copy.deepcopy(layer4)
    chunks = (
        l3_train[i : i + batch].contiguous(memory_format=torch.channels_last)
        for i in range(0, len(l3_train), batch)
    )
    for _ in reestimate_batchnorm(layer4, chunks):
        pass
    return layer4.eval()


def train_descriptors(cache, layer4, eca, trained_layer4: bool) -> np.ndarray:
    """Descriptors of every cached training view (clean and augmented) for whitening."""
    import torch

    from imgfinder.core.train import pooled_descriptor

    idx = np.repeat(cache.valid_indices(), cache.views)
    view = np.tile(np.arange(cache.views), len(cache.valid_indices()))
    out = []
    with torch.inference_mode():
        for i in range(0, len(idx), 64):
            sl = slice(i, i + 64)
            if trained_layer4:
                l3 = torch.from_numpy(cache.layer3_rows(idx[sl], view[sl])).float()
                fmap = layer4(l3.contiguous(memory_format=torch.channels_last)).float()
                gap, gmp = fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))
            else:
                pooled = torch.from_numpy(cache.pooled_rows(idx[sl], view[sl]))
                gap, gmp = pooled[:, 0], pooled[:, 1]
            out.append(pooled_descriptor(eca, gap, gmp))
    return torch.cat(out).numpy()


def evaluate(vectors: np.ndarray, labels: list[str]) -> tuple[float, float]:
    from imgfinder.core.evaluate import evaluate_vectors
    from imgfinder.core.index import ExactIndex

    ids = np.arange(len(vectors), dtype=np.int64)
    index = ExactIndex(dim=vectors.shape[1])
    index.add(ids, vectors.astype(np.float32))
    index.build()
    report = evaluate_vectors(ids, vectors.astype(np.float32), labels, index)
    return report.map, report.precision_at["10"]


def check_product_path(files, weights, head, bundle, size, eca_vecs, l4_vecs, n=16) -> float:
    """Min cosine between the benchmark's descriptors and Extractor's with the saved files."""
    from imgfinder.core.extract import Extractor, ModelConfig

    worst = 1.0
    for cfg, ref in (
        (ModelConfig(weights, head, "cpu", size), eca_vecs),
        (ModelConfig(bundle, None, "cpu", size), l4_vecs),
    ):
        ex = Extractor(cfg, allow_download=False)
        got = ex.embed_arrays([ex.load_array(f) for f in files[:n]])
        worst = min(worst, float(np.min(np.sum(got * ref[:n], axis=1))))
    return worst


def time_input_sizes(weights: str, sizes: list[int], batch: int = 32) -> list[dict]:
    """Per-view seconds of the caching pass and per-image seconds of a layer4 training step."""
    import torch

    from imgfinder.core.extract import ModelConfig, load_model

    model, _, _ = load_model(ModelConfig(weights, None, "cpu", sizes[0]), allow_download=False)
    model.to(memory_format=torch.channels_last)
    layer4 = model.trunk.last
    opt = torch.optim.Adam(layer4.parameters(), 1e-5, fused=True)
    rows = []
    for size in sizes:
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        times = []
        with torch.inference_mode():
            for _ in range(3):
                t = time.perf_counter()
                l3 = model.trunk.frozen(x)
                model.trunk.last(l3)
                times.append(time.perf_counter() - t)
        cache_s = min(times[1:]) / batch  # min: the least disturbed by other users' load
        l3 = l3.clone()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fmap = layer4(l3)
            loss = fmap.float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        step_s = min(times[1:]) / batch
        rows.append(
            {
                "input": size, "layer3 map": "x".join(map(str, l3.shape[1:])),
                "cache s/view": f"{cache_s:.3f}", "layer4 train s/img": f"{step_s:.4f}",
                "layer4 s/epoch (640 img)": f"{640 * step_s:.1f}",
            }
        )  # fmt: skip
    return rows


def main() -> int:
    from imgfinder.core.train import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--train-classes", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--epochs-eca", type=int, default=30)
    ap.add_argument("--epochs-layer4", type=int, default=8)
    ap.add_argument(
        "--unlabelled-epochs",
        type=int,
        default=8,
        help="epochs of an unlabelled (instance) layer4 run on the eval photos themselves, "
        "'adapt to my library' (0: skip)",
    )
    ap.add_argument("--margin", type=float, default=0.3)
    ap.add_argument("--scale", type=float, default=30.0)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument(
        "--layer4",
        nargs="+",
        default=[f"auto:{TrainConfig.backbone_lr:g}", f"frozen:{TrainConfig.backbone_lr:g}"],
        help="layer4 runs as BATCHNORM:LR (batchnorm auto, frozen or train)",
    )
    ap.add_argument("--dims", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--eval-dim", type=int, default=64, help="D' when learned on the eval set")
    ap.add_argument("--power", type=float, default=0.5)
    ap.add_argument("--shrinkage", type=float, default=0.1)
    ap.add_argument("--time-sizes", type=int, nargs="*", default=[112, 224])
    ap.add_argument("--per-class", type=int, default=None, help="limit (quick smoke runs)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on the shared 2-core box 2 OpenMP threads under "
        "other users' load ran layer4 training 5x slower than 1)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("imgfinder.core.whiten").setLevel(logging.ERROR)  # n per row is printed
    with tempfile.TemporaryDirectory(prefix="imgfinder-train-bench-") as tmp:
        return bench(args, Path(tmp))


def bench(args: argparse.Namespace, tmp: Path) -> int:
    import torch

    from imgfinder import paths
    from imgfinder.core.extract import ModelConfig, load_model
    from imgfinder.core.library import run
    from imgfinder.core.train import TrainConfig, Trainer, _frozen_bn
    from imgfinder.core.whiten import learn_whitening

    t_all = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths.set_data_dir(tmp / "data")
    weights, desc = weights_for_bench(tmp)
    train_dir, train_cls, held_cls = split_classes(
        args.dataset, args.train_classes, tmp, args.per_class
    )
    eval_files = [
        f for c in held_cls for f in sorted((args.dataset / c).glob("*.jpg"))[: args.per_class]
    ]
    eval_labels = [f.parent.name for f in eval_files]
    print(f"weights: {desc}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"train classes ({len(train_cls)}): {', '.join(train_cls)}")
    print(
        f"eval classes ({len(held_cls)}, unseen): {', '.join(held_cls)}; {len(eval_files)} images"
    )
    model_cfg = ModelConfig(weights, None, "cpu", args.size)
    common = dict(views=args.views, margin=args.margin, scale=args.scale, lr=args.lr)
    layer4_runs = []
    for spec in args.layer4:
        bn, _, lr = spec.partition(":")
        layer4_runs.append((bn, float(lr or TrainConfig.backbone_lr), False))
    print(
        f"input {args.size}, {args.views} views/image (1 clean), ArcFace m={args.margin} "
        f"s={args.scale}, batch 32, Adam: lr {args.lr:g} for the ECA kernel and class centres; "
        f"layer4 runs (BatchNorm:lr): {', '.join(args.layer4)}; "
        f"epochs: ECA {args.epochs_eca}, layer4 {args.epochs_layer4}"
    )

    t = time.perf_counter()
    base, _, _ = load_model(model_cfg, allow_download=False)
    base.to(memory_format=torch.channels_last)
    l3 = eval_layer3(eval_files, base, args.size)
    print(f"eval layer3 maps (fp32, one trunk pass): {time.perf_counter() - t:.0f} s")

    runs = []  # (name, trainer, result, seconds)
    curve: dict[int, dict] = {}  # epoch -> row of the learning-curve table
    if args.unlabelled_epochs:  # "adapt to my library": the eval photos, without labels
        eval_library = tmp / "eval-library"
        eval_library.mkdir()
        for f in eval_files:
            os.symlink(f, eval_library / f"{f.parent.name}-{f.name}")
        layer4_runs.append(("auto", TrainConfig.backbone_lr, True))
    for bn, blr, unlabelled in layer4_runs:
        t = time.perf_counter()
        cfg = TrainConfig(
            str(eval_library if unlabelled else train_dir), model_cfg,
            epochs=args.unlabelled_epochs if unlabelled else args.epochs_layer4, train="layer4",
            backbone_lr=blr, batchnorm=bn, unlabelled=unlabelled,
            output=f"weights-bench-{bn}-{blr:g}-{int(unlabelled)}", keep_cache=True, **common,
        )  # fmt: skip
        tr = Trainer(cfg, resume=False, allow_download=False)
        name = f"ECA + layer4, BN {tr.batchnorm} (lr {blr:g})"
        if unlabelled:
            name = f"unlabelled on the eval photos, BN {tr.batchnorm} (lr {blr:g})"
        l3_train = None

        def on_epoch(p, tr=tr, blr=blr, unlabelled=unlabelled):
            nonlocal l3_train
            if p.stage != "epoch":
                return
            if l3_train is None:
                l3_train = clean_layer3(tr.cache)
            m = tr.model
            if tr.batchnorm == "train":  # evaluate a copy with the statistics a run ends with
                mp, _ = evaluate(
                    descriptors(l3, recalibrated(m.trunk.last, l3_train), m.eca), eval_labels
                )
            else:
                m.trunk.last.eval()
                mp, _ = evaluate(descriptors(l3, m.trunk.last, m.eca), eval_labels)
                _frozen_bn(m.trunk.last)  # back to training mode, BatchNorm statistics frozen
            row = curve.setdefault(p.epoch, {"epoch": p.epoch})
            key = f"{'unlabelled ' if unlabelled else ''}BN {tr.batchnorm} lr {blr:g}"
            row[f"{key}: loss"] = f"{p.loss:.3f}"
            row[f"{key}: unseen mAP"] = f"{mp:.4f}"

        res = run(tr.run(threading.Event()), on_epoch)
        runs.append((name, tr, res, time.perf_counter() - t))
    t = time.perf_counter()
    cfg = TrainConfig(
        str(train_dir), model_cfg, epochs=args.epochs_eca, train="eca", keep_cache=True, **common
    )
    tre = Trainer(cfg, resume=False, allow_download=False)
    rese = run(tre.run(threading.Event()))
    runs.insert(0, ("ECA only", tre, rese, time.perf_counter() - t))
    first4 = runs[1][2]
    print(
        f"feature cache (trunk once): {first4.cache_seconds:.0f} s for {first4.images} images x "
        f"{args.views} views; runs: "
        + ", ".join(f"{name} {secs:.0f} s" for name, _, _, secs in runs)
    )
    kernel = tre.model.eca.conv.weight.detach().flatten().tolist()
    print(f"trained ECA kernel (untrained: centred delta): {[round(k, 3) for k in kernel]}")

    t = time.perf_counter()
    vec = {"before": descriptors(l3, base.trunk.last, base.eca)}
    learn_on = {"before": train_descriptors(tre.cache, base.trunk.last, base.eca, False)}
    sec = {"before": ""}
    # control: BatchNorm statistics re-estimated on the training images, no training
    control = "before, layer4 BN re-estimated (no training)"
    l4_control = recalibrated(base.trunk.last, clean_layer3(runs[1][1].cache))
    vec[control] = descriptors(l3, l4_control, base.eca)
    learn_on[control] = train_descriptors(runs[1][1].cache, l4_control, base.eca, True)
    sec[control] = ""
    for name, tr, res, _ in runs:
        m = tr.model.eval()
        layer4 = tr.cfg.train == "layer4"
        vec[name] = descriptors(l3, m.trunk.last, m.eca)
        # whitening is learned on the training classes' views for every model
        cache = runs[1][1].cache if tr.cfg.unlabelled else tr.cache
        learn_on[name] = train_descriptors(cache, m.trunk.last, m.eca, layer4)
        sec[name] = f"{np.median(res.epoch_seconds):.2f}"
    worst = check_product_path(
        eval_files, weights, str(rese.output), str(runs[1][2].output), args.size,
        vec["ECA only"], vec[runs[1][0]],
    )  # fmt: skip
    print(
        f"eval + whitening-sample descriptors {time.perf_counter() - t:.0f} s; saved files "
        f"through Extractor vs benchmark descriptors: min cosine {worst:.4f}"
    )

    t = time.perf_counter()
    rows = []
    for name, v in vec.items():
        variants = [("none", v.shape[1], v)]
        full = learn_whitening(
            learn_on[name], max(args.dims), power=args.power, shrinkage=args.shrinkage
        )
        for d in args.dims:
            w = full.truncated(min(d, full.dim_out))  # exact: same as learning d dims
            variants.append((f"train classes ({w.samples})", w.dim_out, w.apply(v)))
        w = learn_whitening(v, args.eval_dim, power=args.power, shrinkage=args.shrinkage)
        variants.append((f"eval set, no labels ({w.samples})", w.dim_out, w.apply(v)))
        for how, dim, vv in variants:
            m, p10 = evaluate(vv, eval_labels)
            rows.append(
                {
                    "model": name, "whitening (learned on, n)": how, "D'": dim,
                    "mAP": f"{m:.4f}", "P@10": f"{p10:.4f}",
                    "store B/img": 2 * dim, "s/epoch": sec[name],
                }
            )  # fmt: skip
    print(f"whitening + evaluation {time.perf_counter() - t:.0f} s")
    print()
    print(table(rows, list(rows[0])))
    print()
    if curve:
        print("learning curve (mAP on the unseen classes after each epoch, no whitening):")
        rows_c = [curve[e] for e in sorted(curve)]
        print(table(rows_c, list(rows_c[0])))
        print()
    for name, _, res, _ in runs:
        loss = res.epoch_loss
        print(f"{name}: ArcFace loss {loss[0]:.3f} -> {loss[-1]:.3f} in {res.epochs_done} epochs")
    if args.time_sizes:
        sizes = time_input_sizes(weights, args.time_sizes)
        print()
        print(table(sizes, list(sizes[0])))
    print(
        f"whitening: power {args.power}, shrinkage {args.shrinkage}; total "
        f"{time.perf_counter() - t_all:.0f} s, peak RSS {peak_rss_mb():.0f} MB; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

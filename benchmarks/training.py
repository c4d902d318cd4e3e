"""Retrieval on unseen classes before/after ArcFace fine-tuning, with and without PCA whitening.

Protocol: train on 8 of the 12 flower classes (alphabetically first), evaluate on the
other 4 (never seen in training) with exact search (`evaluate_vectors`), the same
backbone weights before and after, raw and centred on the eval photos' mean (search's
default). Whitening is learned on the *training* classes' images (clean view + the
cached augmented views): PCA without labels, and supervised from their classes (`whiten
--classes`), centred on the eval photos' mean; for comparison, PCA transductively on
the unlabelled eval images. Eval descriptors come from
one fp32 pass of the frozen part of the trunk (the cached maps kept) re-fused with
each trained head / last stage; a check re-embeds some eval images through `Extractor`
with the saved files (the product path).

    python benchmarks/training.py [--backbone efficientnet-lite0] [--dataset DIR]
        [--size 224] [--views 4] [--epochs-eca 30] [--epochs-last 8]
        [--last auto:1e-4] [--dims 256 1024] [--val-classes 0]

Each --last run is BATCHNORM:LR (batchnorm auto/frozen/train, the last stage's learning
rate); its unseen-class mAP is also printed after every epoch (the learning curve). A
control row re-estimates the last stage's BatchNorm statistics on the training images
without training, to separate what the statistics alone do from what ArcFace does.

`--val-classes N` is for choosing settings without touching the unseen classes: it
trains on the first 8 - N training classes and evaluates on the other N of the 8.

Weights: `--backbone efficientnet-lite0` (default) uses the ImageNet weights of the
installed package; `--backbone resnet50` uses IMGFINDER_WEIGHTS or, without it, a seeded
random-init ResNet50 (plumbing and speed only).
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

from benchmarks.common import DEFAULT_DATASET, backbone_weights, peak_rss_mb, table  # noqa: E402


def split_classes(
    dataset: Path, n_train: int, root: Path, per_class: int | None, n_val: int = 0
) -> tuple[Path, list[str], list[str]]:
    """A folder of symlinks to the training classes' images (no image is copied).

    n_val > 0: a validation split inside the first n_train classes (train on the first
    n_train - n_val, evaluate on the next n_val); the remaining classes stay untouched.
    """
    classes = sorted(p.name for p in dataset.iterdir() if p.is_dir())
    train, held = classes[:n_train], classes[n_train:]
    if n_val:
        train, held = train[: n_train - n_val], train[n_train - n_val :]
    link_root = root / "train-classes"
    for c in train:
        (link_root / c).mkdir(parents=True)
        for f in sorted((dataset / c).glob("*.jpg"))[:per_class]:
            os.symlink(f, link_root / c / f.name)
    return link_root, train, held


def eval_maps(files: list[Path], model, size: int, batch: int = 32):
    """fp32 maps of the clean eval images at the frozen / trainable split (the maps the
    training cache stores), through the extractor's decode and squash."""
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


def descriptors(l3, last, eca, batch: int = 64) -> np.ndarray:
    import torch

    from imgfinder.core.train import pooled_descriptor

    out = []
    with torch.inference_mode():
        for i in range(0, len(l3), batch):
            fmap = last(l3[i : i + batch].contiguous(memory_format=torch.channels_last)).float()
            out.append(pooled_descriptor(eca, fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))))
    return torch.cat(out).numpy()


def clean_maps(cache):
    """The cached maps of the training images' clean views (view 0)."""
    import torch

    idx = cache.valid_indices()
    return torch.from_numpy(cache.layer3_rows(idx, np.zeros(len(idx), np.int64))).float()


def recalibrated(last, l3_train, batch: int = 32):
    """A copy of the last stage in eval mode with BatchNorm statistics re-estimated over
    `l3_train`, by the function Trainer.calibrate_batchnorm uses at the end of a run."""
    import copy

    import torch

    from imgfinder.core.train import reestimate_batchnorm

    last = copy.deepcopy(last)
    chunks = (
        l3_train[i : i + batch].contiguous(memory_format=torch.channels_last)
        for i in range(0, len(l3_train), batch)
    )
    for _ in reestimate_batchnorm(last, chunks):
        pass
    return last.eval()


def train_descriptors(cache, last, eca, trained_last: bool) -> np.ndarray:
    """Descriptors of every cached training view (clean and augmented) for whitening."""
    import torch

    from imgfinder.core.train import pooled_descriptor

    idx = np.repeat(cache.valid_indices(), cache.views)
    view = np.tile(np.arange(cache.views), len(cache.valid_indices()))
    out = []
    with torch.inference_mode():
        for i in range(0, len(idx), 64):
            sl = slice(i, i + 64)
            if trained_last:
                l3 = torch.from_numpy(cache.layer3_rows(idx[sl], view[sl])).float()
                fmap = last(l3.contiguous(memory_format=torch.channels_last)).float()
                gap, gmp = fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))
            else:
                pooled = torch.from_numpy(cache.pooled_rows(idx[sl], view[sl]))
                gap, gmp = pooled[:, 0], pooled[:, 1]
            out.append(pooled_descriptor(eca, gap, gmp))
    return torch.cat(out).numpy()


def centred(v: np.ndarray) -> np.ndarray:
    """Descriptors minus the collection's mean (search's default centring)."""
    return v - v.astype(np.float64).mean(axis=0).astype(v.dtype)


def evaluate(vectors: np.ndarray, labels: list[str]) -> tuple[float, float]:
    from imgfinder.core.evaluate import evaluate_vectors
    from imgfinder.core.index import ExactIndex

    ids = np.arange(len(vectors), dtype=np.int64)
    index = ExactIndex(dim=vectors.shape[1])
    index.add(ids, vectors.astype(np.float32))
    index.build()
    report = evaluate_vectors(ids, vectors.astype(np.float32), labels, index)
    return report.map, report.precision_at["10"]


def check_product_path(
    files, backbone, weights, head, bundle, size, eca_vecs, last_vecs, n=16
) -> float:
    """Min cosine between the benchmark's descriptors and Extractor's with the saved files."""
    from imgfinder.core.extract import Extractor, ModelConfig

    worst = 1.0
    for cfg, ref in (
        (ModelConfig(weights, head, "cpu", size, backbone=backbone), eca_vecs),
        (ModelConfig(bundle, None, "cpu", size, backbone=backbone), last_vecs),
    ):
        ex = Extractor(cfg, allow_download=False)
        got = ex.embed_arrays([ex.load_array(f) for f in files[:n]])
        worst = min(worst, float(np.min(np.sum(got * ref[:n], axis=1))))
    return worst


def time_input_sizes(
    backbone: str, weights: str | None, sizes: list[int], batch: int = 32
) -> list[dict]:
    """Per-view seconds of the caching pass and per-image seconds of a last-stage
    training step."""
    import torch

    from imgfinder.core.extract import ModelConfig, load_model

    cfg = ModelConfig(weights, None, "cpu", sizes[0], backbone=backbone)
    model, _, _ = load_model(cfg, allow_download=False)
    model.to(memory_format=torch.channels_last)
    last = model.trunk.last
    opt = torch.optim.Adam(last.parameters(), 1e-5, fused=True)
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
            fmap = last(l3)
            loss = fmap.float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        step_s = min(times[1:]) / batch
        rows.append(
            {
                "input": size, "cached map": "x".join(map(str, l3.shape[1:])),
                "cache s/view": f"{cache_s:.3f}", "last stage train s/img": f"{step_s:.4f}",
                "last stage s/epoch (640 img)": f"{640 * step_s:.1f}",
            }
        )  # fmt: skip
    return rows


def main() -> int:
    from imgfinder.core.modelspec import BACKBONES, OFFLINE_BACKBONE
    from imgfinder.core.train import TrainConfig
    from imgfinder.core.whiten import DEFAULT_SUPERVISED_SHRINKAGE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", choices=list(BACKBONES), default=OFFLINE_BACKBONE)
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--train-classes", type=int, default=8)
    ap.add_argument(
        "--val-classes",
        type=int,
        default=0,
        help="validation split for choosing settings: train on the first train-classes - N "
        "classes, evaluate on the next N (the unseen classes are not used)",
    )
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--views", type=int, default=TrainConfig.views)
    ap.add_argument("--epochs-eca", type=int, default=30)
    ap.add_argument("--epochs-last", type=int, default=8)
    ap.add_argument(
        "--unlabelled-epochs",
        type=int,
        default=8,
        help="epochs of an unlabelled (instance) last-stage run on the eval photos "
        "themselves, 'adapt to my library' (0: skip)",
    )
    ap.add_argument("--margin", type=float, default=TrainConfig.margin)
    ap.add_argument("--scale", type=float, default=TrainConfig.scale)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument(
        "--last",
        nargs="+",
        default=[f"auto:{TrainConfig.backbone_lr:g}"],
        help="last-stage runs as BATCHNORM:LR (batchnorm auto, frozen or train)",
    )
    ap.add_argument("--no-eca", action="store_true", help="skip the ECA-only run")
    ap.add_argument("--dims", type=int, nargs="*", default=[256, 1024])
    ap.add_argument("--eval-dim", type=int, default=64, help="D' when learned on the eval set")
    ap.add_argument("--power", type=float, default=0.5)
    ap.add_argument("--shrinkage", type=float, default=0.1, help="PCA whitening's")
    ap.add_argument(
        "--supervised-shrinkage", type=float, default=DEFAULT_SUPERVISED_SHRINKAGE,
        help="the supervised whitening's (of the within-class scatter)",
    )  # fmt: skip
    ap.add_argument("--time-sizes", type=int, nargs="*", default=[224])
    ap.add_argument("--per-class", type=int, default=None, help="limit (quick smoke runs)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on the shared 2-core box 2 OpenMP threads under "
        "other users' load ran last-stage training 5x slower than 1)",
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
    from imgfinder.core.modelspec import get_spec
    from imgfinder.core.train import TrainConfig, Trainer, _frozen_bn
    from imgfinder.core.whiten import learn_supervised_whitening, learn_whitening

    t_all = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths.set_data_dir(tmp / "data")
    spec = get_spec(args.backbone)
    weights, desc = backbone_weights(spec.name, tmp)
    train_dir, train_cls, held_cls = split_classes(
        args.dataset, args.train_classes, tmp, args.per_class, args.val_classes
    )
    eval_files = [
        f for c in held_cls for f in sorted((args.dataset / c).glob("*.jpg"))[: args.per_class]
    ]
    eval_labels = [f.parent.name for f in eval_files]
    held_word = "validation, not trained on" if args.val_classes else "unseen"
    print(f"weights: {desc}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"train classes ({len(train_cls)}): {', '.join(train_cls)}")
    print(
        f"eval classes ({len(held_cls)}, {held_word}): {', '.join(held_cls)}; "
        f"{len(eval_files)} images"
    )
    model_cfg = ModelConfig(weights, None, "cpu", args.size, backbone=spec.name)
    common = dict(views=args.views, margin=args.margin, scale=args.scale, lr=args.lr)
    last_runs = []
    for run_spec in args.last:
        bn, _, lr = run_spec.partition(":")
        last_runs.append((bn, float(lr or TrainConfig.backbone_lr), False))
    print(
        f"{spec.title}, last stage = {spec.last_stage}; input {args.size}, {args.views} "
        f"views/image (1 clean), ArcFace m={args.margin} s={args.scale}, batch 32, Adam: lr "
        f"{args.lr:g} for the ECA kernel and class centres; last-stage runs (BatchNorm:lr): "
        f"{', '.join(args.last)}; epochs: ECA {args.epochs_eca}, last stage {args.epochs_last}"
    )

    t = time.perf_counter()
    base, _, _ = load_model(model_cfg, allow_download=False)
    base.to(memory_format=torch.channels_last)
    l3 = eval_maps(eval_files, base, args.size)
    print(f"eval maps at the split (fp32, one pass): {time.perf_counter() - t:.0f} s")
    b_map, b_p10 = evaluate(descriptors(l3, base.trunk.last, base.eca), eval_labels)
    print(f"before training: mAP {b_map:.4f}, P@10 {b_p10:.4f}", flush=True)

    runs = []  # (name, trainer, result, seconds)
    curve: dict[int, dict] = {}  # epoch -> row of the learning-curve table
    if args.unlabelled_epochs:  # "adapt to my library": the eval photos, without labels
        eval_library = tmp / "eval-library"
        eval_library.mkdir()
        for f in eval_files:
            os.symlink(f, eval_library / f"{f.parent.name}-{f.name}")
        last_runs.append(("auto", TrainConfig.backbone_lr, True))
    for bn, blr, unlabelled in last_runs:
        t = time.perf_counter()
        cfg = TrainConfig(
            str(eval_library if unlabelled else train_dir), model_cfg,
            epochs=args.unlabelled_epochs if unlabelled else args.epochs_last, train="layer4",
            backbone_lr=blr, batchnorm=bn, unlabelled=unlabelled,
            output=f"weights-bench-{bn}-{blr:g}-{int(unlabelled)}", keep_cache=True, **common,
        )  # fmt: skip
        tr = Trainer(cfg, resume=False, allow_download=False)
        name = f"ECA + last stage, BN {tr.batchnorm} (lr {blr:g})"
        if unlabelled:
            name = f"unlabelled on the eval photos, BN {tr.batchnorm} (lr {blr:g})"
        l3_train = None

        def on_epoch(p, tr=tr, blr=blr, unlabelled=unlabelled):
            nonlocal l3_train
            if p.stage != "epoch":
                return
            if l3_train is None:
                l3_train = clean_maps(tr.cache)
            m = tr.model
            if tr.batchnorm == "train":  # evaluate a copy with the statistics a run ends with
                mp, p10 = evaluate(
                    descriptors(l3, recalibrated(m.trunk.last, l3_train), m.eca), eval_labels
                )
            else:
                m.trunk.last.eval()
                mp, p10 = evaluate(descriptors(l3, m.trunk.last, m.eca), eval_labels)
                _frozen_bn(m.trunk.last)  # back to training mode, BatchNorm statistics frozen
            row = curve.setdefault(p.epoch, {"epoch": p.epoch})
            key = f"{'unlabelled ' if unlabelled else ''}BN {tr.batchnorm} lr {blr:g}"
            row[f"{key}: loss"] = f"{p.loss:.3f}"
            row[f"{key}: mAP"] = f"{mp:.4f}"
            row[f"{key}: P@10"] = f"{p10:.4f}"
            print(f"  epoch {p.epoch} {key}: loss {p.loss:.3f} mAP {mp:.4f}", flush=True)

        res = run(tr.run(threading.Event()), on_epoch)
        runs.append((name, tr, res, time.perf_counter() - t))
    labelled = [r for r in runs if not r[1].cfg.unlabelled]
    first_last = labelled[0] if labelled else None
    if not args.no_eca:
        t = time.perf_counter()
        cfg = TrainConfig(
            str(train_dir), model_cfg, epochs=args.epochs_eca, train="eca", keep_cache=True,
            **common,
        )  # fmt: skip
        tre = Trainer(cfg, resume=False, allow_download=False)
        rese = run(tre.run(threading.Event()))
        runs.insert(0, ("ECA only", tre, rese, time.perf_counter() - t))
        kernel = tre.model.eca.conv.weight.detach().flatten().tolist()
        print(f"trained ECA kernel (untrained: centred delta): {[round(k, 3) for k in kernel]}")
    if first_last is not None:
        print(
            f"feature cache (frozen part once): {first_last[2].cache_seconds:.0f} s for "
            f"{first_last[2].images} images x {args.views} views"
        )
    print("runs: " + ", ".join(f"{name} {secs:.0f} s" for name, _, _, secs in runs))

    t = time.perf_counter()
    vec = {"before": descriptors(l3, base.trunk.last, base.eca)}
    sec = {"before": ""}
    learn_on = {}
    learn_labels = {}  # class of each whitening-sample row (every view of a photo: its class)

    def labels_of(trainer):
        cache = trainer.cache
        return np.repeat(trainer.data.labels[cache.valid_indices()], cache.views)

    if args.dims and runs:
        tr0 = (first_last or runs[0])[1]
        learn_on["before"] = train_descriptors(tr0.cache, base.trunk.last, base.eca, False)
        learn_labels["before"] = labels_of(tr0)
    if first_last is not None:
        # control: BatchNorm statistics re-estimated on the training images, no training
        control = "before, last-stage BN re-estimated (no training)"
        l4_control = recalibrated(base.trunk.last, clean_maps(first_last[1].cache))
        vec[control] = descriptors(l3, l4_control, base.eca)
        sec[control] = ""
        if args.dims:
            learn_on[control] = train_descriptors(first_last[1].cache, l4_control, base.eca, True)
            learn_labels[control] = labels_of(first_last[1])
    for name, tr, res, _ in runs:
        m = tr.model.eval()
        trained_last = tr.cfg.train == "layer4"
        vec[name] = descriptors(l3, m.trunk.last, m.eca)
        if args.dims:  # whitening is learned on the training classes' views for every model
            labelled_tr = first_last[1] if tr.cfg.unlabelled and first_last else tr
            learn_on[name] = train_descriptors(labelled_tr.cache, m.trunk.last, m.eca, trained_last)
            learn_labels[name] = labels_of(labelled_tr)
        sec[name] = f"{np.median(res.epoch_seconds):.2f}"
    if not args.no_eca and first_last is not None:
        worst = check_product_path(
            eval_files, spec.name, weights, str(runs[0][2].output), str(first_last[2].output),
            args.size, vec["ECA only"], vec[first_last[0]],
        )  # fmt: skip
        print(
            f"eval + whitening-sample descriptors {time.perf_counter() - t:.0f} s; saved files "
            f"through Extractor vs benchmark descriptors: min cosine {worst:.4f}"
        )

    t = time.perf_counter()
    rows = []
    before = evaluate(vec["before"], eval_labels)
    default = evaluate(centred(vec["before"]), eval_labels)  # what search does untrained
    for name, v in vec.items():
        # the product centres search on the library's mean: here the eval photos' mean
        variants = [("none", "no", v.shape[1], v), ("none", "yes", v.shape[1], centred(v))]
        if args.dims and name in learn_on:
            full = learn_whitening(
                learn_on[name], max(args.dims), power=args.power, shrinkage=args.shrinkage
            )
            for d in args.dims:
                w = full.truncated(min(d, full.dim_out))  # exact: same as learning d dims
                variants.append((f"PCA, train views ({w.samples})", "-", w.dim_out, w.apply(v)))
            # `whiten --classes`: supervised on the training classes' views, centred on
            # the library's mean (as the command does once the library has photos)
            for d in args.dims:
                w = learn_supervised_whitening(
                    learn_on[name], learn_labels[name], d,
                    shrinkage=args.supervised_shrinkage, centre=v.astype(np.float64).mean(0),
                )  # fmt: skip
                how = f"supervised, train views ({w.samples}, {w.classes} classes)"
                variants.append((how, "yes", w.dim_out, w.apply(v)))
        if args.eval_dim:
            w = learn_whitening(v, args.eval_dim, power=args.power, shrinkage=args.shrinkage)
            variants.append((f"PCA, eval set, no labels ({w.samples})", "-", w.dim_out, w.apply(v)))
        for how, cen, dim, vv in variants:
            m, p10 = evaluate(vv, eval_labels)
            rows.append(
                {
                    "model": name, "whitening (learned on, n)": how, "centred": cen,
                    "D'": dim, "mAP": f"{m:.4f}", "P@10": f"{p10:.4f}",
                    "mAP gain": f"{100 * (m - default[0]):+.1f}",
                    "P@10 gain": f"{100 * (p10 - default[1]):+.1f}",
                    "vs raw": f"{100 * (m - before[0]):+.1f}",
                    "store B/img": 2 * dim, "s/epoch": sec[name],
                }
            )  # fmt: skip
    print(f"whitening + evaluation {time.perf_counter() - t:.0f} s")
    print()
    print(f"{spec.title} at {args.size} px, {len(held_cls)} {held_word} classes "
          "(gain: points of mAP / P@10 over the untrained default, 'before' centred on the "
          "library's mean; 'vs raw': mAP points over 'before' uncentred):")  # fmt: skip
    print(table(rows, list(rows[0])))
    print()
    if curve:
        print(f"learning curve (mAP on the {held_word} classes after each epoch, no whitening):")
        rows_c = [curve[e] for e in sorted(curve)]
        cols = list(dict.fromkeys(k for r in rows_c for k in r))
        print(table(rows_c, cols))
        print()
    for name, _, res, _ in runs:
        loss = res.epoch_loss
        print(f"{name}: ArcFace loss {loss[0]:.3f} -> {loss[-1]:.3f} in {res.epochs_done} epochs")
    if args.time_sizes:
        sizes = time_input_sizes(spec.name, weights, args.time_sizes)
        print()
        print(table(sizes, list(sizes[0])))
    print(
        f"whitening: power {args.power}, shrinkage {args.shrinkage}; total "
        f"{time.perf_counter() - t_all:.0f} s, peak RSS {peak_rss_mb():.0f} MB; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

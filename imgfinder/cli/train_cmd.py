"""`imgfinder train DATASET` (ArcFace fine-tuning) and `imgfinder whiten` (PCA or supervised
whitening)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imgfinder import paths
from imgfinder.cli.common import ProgressBar, model_config, open_library
from imgfinder.core.extract import Extractor, ModelConfig
from imgfinder.core.modelspec import DEFAULT_BACKBONE
from imgfinder.core.train import BATCHNORM_MODES, TRAINABLE, TrainConfig, train
from imgfinder.core.types import run
from imgfinder.core.whiten import (
    DEFAULT_SUPERVISED_SHRINKAGE,
    LearningCancelled,
    learn_from_classes,
    learn_from_library,
    save_whitening,
)
from imgfinder.errors import ImgfinderError


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train",
        parents=[common],
        help="fine-tune the model with ArcFace on your photos (writes a head or weights file)",
        description="Labelled: one sub-folder per class. --unlabelled: every photo is its own "
        "class and its augmented views are the samples ('adapt to my library').",
    )
    p.add_argument(
        "dataset", help="folder of images (one sub-folder per class unless --unlabelled)"
    )
    p.add_argument("--epochs", type=int, default=10, help="passes over the images (default 10)")
    p.add_argument("--unlabelled", action="store_true", help="instance-level: no class folders")
    p.add_argument(
        "--train",
        choices=TRAINABLE,
        default="layer4",
        help="layer4: the backbone's last stage (ResNet50's layer4, EfficientNet-Lite0's "
        "blocks 11-15 and head conv) + ECA, writes a full weights bundle (default: it fits "
        "the classes you train on; on flower classes it was not trained on, Lite0's ImageNet "
        "features measured no better after training, see benchmarks/training.py); eca: the "
        "ECA kernel only, trunk frozen (seconds per epoch)",
    )
    p.add_argument("--margin", type=float, default=0.3, help="ArcFace angular margin (radians)")
    p.add_argument("--scale", type=float, default=30.0, help="ArcFace logit scale")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--views", type=int, default=4, help="cached views per image, 1 clean")
    p.add_argument("--lr", type=float, default=1e-3, help="ECA and class-centre learning rate")
    p.add_argument(
        "--backbone-lr", type=float, default=1e-4, help="learning rate of the last stage"
    )
    p.add_argument(
        "--batchnorm",
        choices=BATCHNORM_MODES,
        default="auto",
        help="last-stage BatchNorm statistics: frozen (pretrained backbones), or trained and "
        "re-estimated at the end; auto (default) trains them only if the backbone's were "
        "never estimated (a random-init model)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--keep-cache", action="store_true", help="keep the cached trunk features")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 can be several times faster "
        "on a machine busy with other work)",
    )
    p.add_argument(
        "-o",
        "--output",
        help="output file; a bare name goes into the data dir's models folder "
        "(default models/weights-<dataset>.pt, or head-<dataset>.pt for --train eca)",
    )
    p.set_defaults(func=cmd_train)

    w = sub.add_parser(
        "whiten",
        parents=[common],
        help="learn a whitening: PCA from the library's own vectors (no labels), or "
        "supervised from a folder per class (--classes)",
        description="Without --classes: PCA whitening of the library's vectors. With "
        "--classes DATASET (one sub-folder per class, like `train`): a discriminative "
        "whitening that damps the ways photos of one subject differ; learned on some "
        "classes it also helps on others (benchmarks/training.py).",
    )
    w.add_argument(
        "--classes",
        metavar="DATASET",
        help="learn a supervised whitening from this folder of class sub-folders",
    )
    w.add_argument(
        "--dim",
        type=int,
        default=None,
        help="output dimension D' (default: 1024, or a quarter of the library's vectors if "
        "fewer; with fewer than ~4 D' vectors the weak components are mostly noise)",
    )
    w.add_argument("--power", type=float, default=0.5, help="eigenvalue power (0.5: full)")
    w.add_argument(
        "--shrinkage",
        type=float,
        default=None,
        help="shrinkage to the mean eigenvalue (default 0.1; with --classes "
        f"{DEFAULT_SUPERVISED_SHRINKAGE}, of the within-class scatter)",
    )
    w.add_argument("-o", "--output", help="output .npz (default models/whiten-<tag>.npz)")
    w.set_defaults(func=cmd_whiten)


@contextlib.contextmanager
def sigint_cancels(cancel: threading.Event) -> Iterator[None]:
    """First Ctrl-C asks the run to checkpoint and stop; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\nstopping after this batch (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        dataset=args.dataset,
        model=model_config(args),
        output=args.output,
        epochs=args.epochs,
        unlabelled=args.unlabelled,
        train=args.train,
        views=args.views,
        margin=args.margin,
        scale=args.scale,
        batch_size=args.batch_size,
        lr=args.lr,
        backbone_lr=args.backbone_lr,
        batchnorm=args.batchnorm,
        seed=args.seed,
        keep_cache=args.keep_cache,
        threads=args.threads,
    )


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _config(args)
    cancel = threading.Event()
    bar = ProgressBar(label=lambda p: "caching views" if p.stage == "cache" else p.message)
    with sigint_cancels(cancel):
        gen = train(cfg, cancel=cancel, resume=args.resume, allow_download=not args.offline)
        result = run(gen, bar)
    bar.close()
    if result.cancelled:
        print(
            f"imgfinder: training interrupted after {result.epochs_done} of {cfg.epochs} epochs; "
            "run the same command with --resume to continue",
            file=sys.stderr,
        )
        return 130
    losses = result.epoch_loss
    per_epoch = float(np.median(result.epoch_seconds)) if result.epoch_seconds else 0.0
    print(
        f"trained {cfg.train} on {result.images} images, {result.classes} classes: ArcFace loss "
        f"{losses[0]:.4f} -> {losses[-1]:.4f} in {result.epochs_done} epochs "
        f"({per_epoch:.1f} s/epoch; feature cache {result.cache_seconds:.1f} s)"
        + (f"; last-stage BatchNorm {result.batchnorm}" if result.batchnorm else "")
        if losses
        else f"nothing left to train ({result.epochs_done} epochs already done)"
    )
    size = cfg.model.input_size
    backbone = cfg.model.spec.name
    options = [] if backbone == DEFAULT_BACKBONE else ["--backbone", backbone]
    if cfg.train == "eca":
        use = ModelConfig(
            weights=cfg.model.weights, head=str(result.output), device="cpu",
            input_size=size, backbone=backbone,
        )  # fmt: skip
        options += [*(["--weights", cfg.model.weights] if cfg.model.weights else []), "--head"]
    else:
        use = ModelConfig(
            weights=str(result.output), device="cpu", input_size=size, backbone=backbone
        )
        options.append("--weights")
    options.append(str(result.output))
    if size != ModelConfig.input_size:  # the size it was trained at
        options += ["--input-size", str(size)]
    model_id = Extractor(use, allow_download=False).model_id
    print(f"model id: {model_id}")
    print(f"use it with: imgfinder {' '.join(options)} index   (a re-index follows)")
    print(result.output)
    return 0


def _learn_supervised(lib, args: argparse.Namespace):
    """The supervised whitening of `--classes`, with a progress bar; None if interrupted."""
    shrinkage = DEFAULT_SUPERVISED_SHRINKAGE if args.shrinkage is None else args.shrinkage
    cancel = threading.Event()
    bar = ProgressBar(label=lambda p: "embedding the class photos")
    try:
        with sigint_cancels(cancel):
            gen = learn_from_classes(lib, args.classes, args.dim, shrinkage, cancel=cancel)
            return run(gen, bar)
    except LearningCancelled:
        print("imgfinder: whitening interrupted; nothing was written", file=sys.stderr)
        return None
    finally:
        bar.close()


def cmd_whiten(args: argparse.Namespace) -> int:
    if args.dim is not None and args.dim < 1:
        raise ImgfinderError("--dim must be at least 1")
    args.whitening = None  # open the raw library: no whitening file to load (or to mismatch)
    lib = open_library(args)
    try:
        if args.classes:
            w = _learn_supervised(lib, args)
        else:
            shrinkage = 0.1 if args.shrinkage is None else args.shrinkage
            w = learn_from_library(lib, args.dim, power=args.power, shrinkage=shrinkage)
    finally:
        lib.close()
    if w is None:
        return 130
    out = Path(args.output) if args.output else paths.models_dir() / w.file_name
    save_whitening(w, out)
    if w.kind == "supervised":
        print(
            f"learned from {w.samples} photos in {w.classes} classes, centred on "
            f"{w.centred_on}: {w.dim_in} -> {w.dim_out} dims"
        )
    else:
        print(f"learned from {w.samples} vectors: {w.dim_in} -> {w.dim_out} dims")
    print(f"whitened model id: {w.output_model_id}")
    print(out)
    return 0

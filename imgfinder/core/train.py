"""ArcFace fine-tuning of the fused ECA model on cached trunk features; resumable and cancellable.

The frozen part of the network runs once: K views per image (view 0 clean, the rest
augmented) go through the trunk and what the trainable part needs is cached on disk
(`paths.cache_dir()/train/`). ECA-only training needs just the pooled layer4 statistics
(GAP and GMP, because the ECA-weighted average of the map is the ECA weights times its
GAP), so an epoch takes seconds. ECA + layer4 training caches layer3 maps and re-runs
only layer4. The result is a head file {"head": ECA state} or an imgfinder weights
bundle; both change the model id.

BatchNorm in layer4 (`batchnorm`): "frozen" keeps the backbone's running statistics
(right for pretrained weights and small data sets); "train" normalises with batch
statistics while training and re-estimates the running statistics over the clean
training images at the end ("precise BN"). "auto" picks "train" only when the
backbone's layer4 statistics were never estimated (running mean 0, variance 1, as in a
random-init model, where freezing them measured worse than no training at all on unseen
classes), else "frozen".
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imgfinder import __version__, paths
from imgfinder.atomic import atomic_write
from imgfinder.core import scan
from imgfinder.core.arcface import ArcFace
from imgfinder.core.extract import ModelConfig, load_model, pick_device
from imgfinder.core.model import ECA
from imgfinder.core.traincache import FeatureCache, cache_for
from imgfinder.core.types import Progress
from imgfinder.core.weights import BUNDLE_FORMAT, classify_state
from imgfinder.errors import ImgfinderError

log = logging.getLogger(__name__)

TRAINABLE = ("eca", "layer4")
BATCHNORM_MODES = ("auto", "frozen", "train")
CHECKPOINT_FORMAT = "imgfinder-train-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """A training run; the fields below `epochs` must match to resume a checkpoint."""

    dataset: str
    model: ModelConfig = field(default_factory=ModelConfig)
    output: str | None = None  # default: models_dir()/head-<dataset>.pt or weights-<dataset>.pt
    epochs: int = 10
    unlabelled: bool = False  # every photo its own class, its augmented views the samples
    # "layer4": the last stage + ECA; "eca": the ECA kernel only. On 4 flower classes never
    # trained on (benchmarks/training.py) the last stage helped a random-init ResNet50; with
    # Lite0's ImageNet weights no setting tried beat the untrained model (0.894 mAP).
    train: str = "layer4"
    views: int = 4  # cached views per image, view 0 un-augmented
    margin: float = 0.3
    scale: float = 30.0
    batch_size: int = 32
    lr: float = 1e-3  # ECA kernel and ArcFace class centres (Adam)
    backbone_lr: float = 1e-4  # layer4 (Adam)
    batchnorm: str = "auto"  # layer4 BatchNorm: "auto", "frozen" or "train" (module docstring)
    seed: int = 0
    keep_cache: bool = False
    checkpoint_every_s: float = 120.0
    cache_batch: int | None = None  # views per trunk forward while caching (None: per device)
    threads: int | None = None  # torch CPU threads during the run (None: leave torch's choice)

    def resume_settings(self, cache_key: str) -> dict:
        """The settings a checkpoint must match to be resumed (with the feature cache's key)."""
        keys = ("unlabelled", "train", "views", "margin", "scale", "batch_size", "lr")
        sig = {k: getattr(self, k) for k in (*keys, "backbone_lr", "batchnorm", "seed")}
        sig["cache"] = cache_key
        if self.model.attention_kind != "eca" or self.model.pooling_kind != "max":
            sig["head"] = f"{self.model.attention_kind}+{self.model.pooling_kind}"  # issue 18
        return sig


@dataclass
class TrainProgress(Progress):
    """A Progress with the running loss (stage "cache" or "train")."""

    epoch: int = 0
    epochs: int = 0
    loss: float | None = None


@dataclass
class TrainResult:
    output: Path | None  # None when cancelled
    checkpoint: Path
    cancelled: bool = False
    epochs_done: int = 0
    images: int = 0
    classes: int = 0
    epoch_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    cache_seconds: float = 0.0
    batchnorm: str | None = None  # layer4 runs: "frozen" or "train", as resolved


@dataclass
class TrainSet:
    root: Path
    files: list[str]
    labels: np.ndarray  # int64 class index per file
    classes: list[str]


def discover(dataset: str | Path, unlabelled: bool = False) -> TrainSet:
    """Folder-per-class images, or (unlabelled) every image under the folder as its own class."""
    root = Path(dataset).expanduser().resolve()
    if not root.is_dir():
        raise ImgfinderError(f"no such dataset folder: {root}")
    files = [str(f) for f in scan.iter_image_files([root])]
    if unlabelled:
        if len(files) < 2:
            raise ImgfinderError(f"{root} has fewer than two images")
        classes = [str(Path(f).relative_to(root)) for f in files]
        return TrainSet(root, files, np.arange(len(files), dtype=np.int64), classes)
    kept, names = [], []
    for f in files:
        parts = Path(f).relative_to(root).parts
        if len(parts) < 2:
            log.warning("%s is not inside a class folder; ignored", f)
            continue
        kept.append(f)
        names.append(parts[0])
    classes = sorted(set(names))
    if len(classes) < 2:
        raise ImgfinderError(
            f"{root} needs at least two class sub-folders with images (or use --unlabelled)"
        )
    index = {c: i for i, c in enumerate(classes)}
    return TrainSet(root, kept, np.asarray([index[n] for n in names], dtype=np.int64), classes)


def pooled_descriptor(eca: ECA, gap: torch.Tensor, gmp: torch.Tensor) -> torch.Tensor:
    """FusedECA.fuse from pooled statistics: mean(A * w) = w * mean(A) for channel weights w."""
    weights = eca.channel_weights(gap[:, :, None, None])
    avg = F.normalize(weights * gap, dim=1)
    return F.normalize(torch.cat([avg, F.normalize(gmp, dim=1)], dim=1), dim=1)


def default_output(cfg: TrainConfig, dataset: Path) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset.name).strip("._") or "dataset"
    prefix = "head" if cfg.train == "eca" else "weights"
    return paths.models_dir() / f"{prefix}-{name}.pt"


def resolve_output(cfg: TrainConfig, dataset: Path) -> Path:
    """-o NAME (no folder) lands in the models dir; a path is taken as given; .pt is added."""
    if not cfg.output:
        return default_output(cfg, dataset)
    out = Path(cfg.output).expanduser()
    if out.suffix != ".pt":
        out = out.with_name(out.name + ".pt")
    if len(out.parts) == 1:
        out = paths.models_dir() / out
    return out.resolve()


def _batchnorms(module: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _frozen_bn(module: torch.nn.Module) -> None:
    """Train mode for dropout-free layers but BatchNorm keeps its running statistics."""
    module.train()
    for m in _batchnorms(module):
        m.eval()


def bn_statistics_untrained(module: torch.nn.Module) -> bool:
    """True when every BatchNorm still has its initial statistics (mean 0, variance 1)."""
    layers = _batchnorms(module)
    return bool(layers) and all(
        m.running_mean is not None
        and bool(torch.all(m.running_mean == 0))
        and bool(torch.all(m.running_var == 1))
        for m in layers
    )


def resolve_batchnorm(mode: str, module: torch.nn.Module) -> str:
    """ "frozen" or "train" for `mode` ("auto" decides from the module's statistics)."""
    if mode not in BATCHNORM_MODES:
        raise ImgfinderError(f"batchnorm must be one of {', '.join(BATCHNORM_MODES)}")
    if mode != "auto":
        return mode
    return "train" if bn_statistics_untrained(module) else "frozen"


def reestimate_batchnorm(
    module: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    forward: Callable[[torch.Tensor], object] | None = None,
) -> Generator[int, None, None]:
    """Replace the module's BatchNorm statistics by the size-weighted mean of the statistics
    of `batches` (inputs, run through `forward`, default the module, in train mode).

    Yields the number of samples done after each batch; closed before the end, it puts
    back the statistics the module had. Leaves the module in train mode.
    """
    forward = forward or module
    layers = _batchnorms(module)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in layers]
    for m in layers:
        m.reset_running_stats()
    done, finished = 0, False
    module.train()
    try:
        with torch.no_grad():
            for x in batches:
                done += len(x)
                for m in layers:  # running = size-weighted mean of the batch statistics
                    m.momentum = len(x) / done
                forward(x)
                yield done
        finished = True
    finally:
        for m, (mean, var, momentum) in zip(layers, saved):
            m.momentum = momentum
            if not finished:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)


class Trainer:
    """One run's state; `run()` is the generator behind `train()`."""

    def __init__(self, cfg: TrainConfig, *, resume: bool, allow_download: bool):
        if cfg.train not in TRAINABLE:
            raise ImgfinderError(f"--train must be one of {', '.join(TRAINABLE)}")
        if cfg.batchnorm not in BATCHNORM_MODES:
            raise ImgfinderError(f"--batchnorm must be one of {', '.join(BATCHNORM_MODES)}")
        if cfg.epochs < 1 or cfg.views < 1 or cfg.batch_size < 2:
            raise ImgfinderError("epochs and views must be >= 1, batch size >= 2")
        if cfg.unlabelled and cfg.views < 2:
            raise ImgfinderError(
                "unlabelled training learns from augmented views: use --views >= 2"
            )
        self.cfg = cfg
        self.resume = resume
        self.data = discover(cfg.dataset, cfg.unlabelled)
        self.output = resolve_output(cfg, self.data.root)
        self.checkpoint = self.output.with_suffix(".ckpt")
        self.device = pick_device(cfg.model.device)
        self.model, self.weights, _ = load_model(cfg.model, allow_download=allow_download)
        self.model.to(self.device, memory_format=torch.channels_last)
        self.size = int(cfg.model.input_size)
        self.cache: FeatureCache = cache_for(
            self.model.spec, self.data.files, self.weights.tag, self.size, cfg.views, cfg.seed,
            layer3=cfg.train == "layer4" or not self.model.pooled_head,  # CBAM/GeM need the map
        )  # fmt: skip
        # bf16 autocast for layer4 on a GPU; on CPUs without AMX it measured no faster than fp32
        self.autocast = self.device.type == "cuda"
        self.resume_settings = cfg.resume_settings(self.cache.key)
        self.batchnorm = (
            resolve_batchnorm(cfg.batchnorm, self.model.trunk.last)
            if cfg.train == "layer4"
            else None
        )
        if self.batchnorm == "train" and self.size < 64:  # a 1x1 layer4 map: no batch statistics
            raise ImgfinderError(
                "training BatchNorm needs an input size of at least 64 (use --batchnorm frozen)"
            )

    # -- steps -------------------------------------------------------------------------
    def descriptors(self, idx: np.ndarray, view: np.ndarray) -> torch.Tensor:
        if self.cfg.train == "eca" and self.model.pooled_head:
            pooled = torch.from_numpy(self.cache.pooled_rows(idx, view)).to(self.device)
            return pooled_descriptor(self.model.eca, pooled[:, 0], pooled[:, 1])
        fmap = self._run_layer4(self._layer3(idx, view))
        return self.model.fuse(fmap.float()).descriptor

    def _layer3(self, idx: np.ndarray, view: np.ndarray) -> torch.Tensor:
        """The cached layer3 maps of these (image, view) pairs, on the device, float32."""
        l3 = torch.from_numpy(self.cache.layer3_rows(idx, view)).to(self.device).float()
        return l3.contiguous(memory_format=torch.channels_last)

    def _run_layer4(self, l3: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.model.trunk.last(l3)

    def clean_descriptors(self, idx: np.ndarray) -> torch.Tensor:
        """View-0 descriptors of the starting model, from the pooled cache (no layer4 run)."""
        if not self.model.pooled_head:  # CBAM / GeM: the descriptor needs the whole map
            return self.descriptors(idx, np.zeros(len(idx), np.int64))
        pooled = torch.from_numpy(self.cache.pooled_rows(idx, np.zeros(len(idx), np.int64)))
        pooled = pooled.to(self.device)
        return pooled_descriptor(self.model.eca, pooled[:, 0], pooled[:, 1])

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Image order and the view each image shows this epoch, from (seed, epoch) alone."""
        rng = np.random.default_rng([self.cfg.seed, epoch])
        order = rng.permutation(self.cache.valid_indices())
        return order, rng.integers(0, self.cfg.views, size=len(order))

    def _save_checkpoint(self, arcface: ArcFace, opt, epoch: int, step: int, hist: dict) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "signature": self.resume_settings,  # the key name is the checkpoint format's
            "epoch": epoch,
            "step": step,
            "eca": self.model.eca.state_dict(),
            "gem": None if self.model.gem is None else self.model.gem.state_dict(),
            "layer4": self.model.trunk.last.state_dict() if self.cfg.train == "layer4" else None,
            "arcface": arcface.state_dict(),
            "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": hist,
        }
        with atomic_write(self.checkpoint) as fh:
            torch.save(state, fh)
        log.info("checkpoint %s (epoch %d, step %d)", self.checkpoint, epoch, step)

    def _load_checkpoint(self, arcface: ArcFace, opt) -> tuple[int, int, dict] | None:
        if not self.checkpoint.exists():
            log.warning("no checkpoint at %s; starting from the beginning", self.checkpoint)
            return None
        try:
            state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise ImgfinderError(f"cannot read checkpoint {self.checkpoint}: {exc}") from None
        if state.get("format") != CHECKPOINT_FORMAT or state.get("version") != CHECKPOINT_VERSION:
            raise ImgfinderError(f"{self.checkpoint} is not a training checkpoint of this version")
        want = self.resume_settings
        if state["signature"] != want:
            diff = sorted(k for k in want if state["signature"].get(k) != want[k])
            raise ImgfinderError(
                f"{self.checkpoint} was made with other settings ({', '.join(diff)} differ); "
                "use the same settings, or start over without --resume"
            )
        self.model.eca.load_state_dict(state["eca"])
        if self.model.gem is not None and state.get("gem") is not None:
            self.model.gem.load_state_dict(state["gem"])
        if state["layer4"] is not None:
            self.model.trunk.last.load_state_dict(state["layer4"])
        arcface.load_state_dict(state["arcface"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        return int(state["epoch"]), int(state["step"]), state["history"]

    def _setup(self) -> tuple[ArcFace, torch.optim.Optimizer]:
        cfg = self.cfg
        self.model.requires_grad_(False)
        self.model.eval()
        self.model.eca.requires_grad_(True)
        groups = [{"params": list(self.model.eca.parameters()), "lr": cfg.lr}]
        if self.model.gem is not None:  # GeM's p is learnt with the head
            self.model.gem.requires_grad_(True)
            groups[0]["params"] += list(self.model.gem.parameters())
        if cfg.train == "layer4":
            layer4 = self.model.trunk.last
            layer4.requires_grad_(True)
            if self.batchnorm == "train":
                layer4.train()
            else:
                _frozen_bn(layer4)
            log.info("layer4 BatchNorm: %s (asked: %s)", self.batchnorm, cfg.batchnorm)
            groups.append({"params": list(layer4.parameters()), "lr": cfg.backbone_lr})
        arcface = ArcFace(self.model.dim, len(self.data.classes), cfg.margin, cfg.scale)
        arcface.to(self.device)
        # class centres start at the mean clean-view descriptor of each class
        valid = self.cache.valid_indices()
        with torch.no_grad():
            if self.batchnorm == "train":  # batch statistics change the descriptors at once
                step, view0 = cfg.batch_size, np.zeros(cfg.batch_size, np.int64)
                parts = [
                    self.descriptors(valid[i : i + step], view0[: len(valid[i : i + step])])
                    for i in range(0, len(valid), step)
                ]
            else:
                parts = [
                    self.clean_descriptors(valid[i : i + 1024]) for i in range(0, len(valid), 1024)
                ]
            clean = torch.cat(parts)
        arcface.init_centres(clean, torch.from_numpy(self.data.labels[valid]).to(self.device))
        groups.append({"params": [arcface.weight], "lr": cfg.lr})
        try:  # the fused kernel is several times faster for layer4's 15M parameters
            opt = torch.optim.Adam(groups, fused=True)
        except (RuntimeError, TypeError):
            opt = torch.optim.Adam(groups)
        return arcface, opt

    def run(self, cancel: threading.Event) -> Generator[Progress, None, TrainResult]:
        """Like _run, with the configured CPU thread count (restored afterwards)."""
        previous = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        try:
            return (yield from self._run(cancel))
        finally:
            torch.set_num_threads(previous)

    def _run(self, cancel: threading.Event) -> Generator[Progress, None, TrainResult]:
        cfg = self.cfg
        result = TrainResult(None, self.checkpoint, images=len(self.data.files))
        result.classes = len(self.data.classes)
        result.batchnorm = self.batchnorm
        t0 = time.perf_counter()
        built = yield from self.cache.build(self.model, self.device, cancel, cfg.cache_batch)
        result.cache_seconds = time.perf_counter() - t0
        if not built:
            result.cancelled = True
            return result
        if len(np.unique(self.data.labels[self.cache.valid_indices()])) < 2:
            raise ImgfinderError("fewer than two classes have readable images")
        torch.manual_seed(cfg.seed)
        arcface, opt = self._setup()
        epoch, step = 0, 0
        hist = {"epoch_loss": [], "epoch_seconds": [], "loss_sum": 0.0, "n": 0, "seconds": 0.0}
        loaded = self._load_checkpoint(arcface, opt) if self.resume else None
        if loaded is not None:
            epoch, step, hist = loaded
            log.info("resuming at epoch %d step %d", epoch, step)
        labels = torch.from_numpy(self.data.labels).to(self.device)
        n_valid = len(self.cache.valid_indices())
        steps_per_epoch = math.ceil(n_valid / cfg.batch_size)
        total = cfg.epochs * n_valid
        started, done_here = time.perf_counter(), 0
        last_ckpt = started
        while epoch < cfg.epochs:
            order, views = self.plan(epoch)
            epoch_start = time.perf_counter() - hist["seconds"]
            while step < steps_per_epoch:
                if cancel.is_set():
                    hist["seconds"] = time.perf_counter() - epoch_start
                    self._save_checkpoint(arcface, opt, epoch, step, hist)
                    result.cancelled = True
                    result.epochs_done = epoch
                    result.epoch_loss = list(hist["epoch_loss"])
                    result.epoch_seconds = list(hist["epoch_seconds"])
                    return result
                sl = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
                idx = order[sl]
                loss = arcface(self.descriptors(idx, views[sl]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_value = loss.item()
                hist["loss_sum"] += loss_value * len(idx)
                hist["n"] += len(idx)
                step += 1
                done_here += len(idx)
                elapsed = time.perf_counter() - started
                rate = done_here / elapsed if elapsed > 0 else None
                done = epoch * n_valid + min(step * cfg.batch_size, n_valid)
                eta = (total - done) / rate if rate else None
                yield TrainProgress(
                    "train", done, total, rate, eta,
                    message=f"epoch {epoch + 1}/{cfg.epochs} loss {loss_value:.4f}",
                    epoch=epoch + 1, epochs=cfg.epochs, loss=loss_value,
                )  # fmt: skip
                if time.perf_counter() - last_ckpt > cfg.checkpoint_every_s:
                    hist["seconds"] = time.perf_counter() - epoch_start
                    self._save_checkpoint(arcface, opt, epoch, step, hist)
                    last_ckpt = time.perf_counter()
            hist["epoch_loss"].append(hist["loss_sum"] / max(1, hist["n"]))
            hist["epoch_seconds"].append(time.perf_counter() - epoch_start)
            hist.update(loss_sum=0.0, n=0, seconds=0.0)
            log.info("epoch %d: loss %.4f", epoch + 1, hist["epoch_loss"][-1])
            epoch, step = epoch + 1, 0
            self._save_checkpoint(arcface, opt, epoch, step, hist)
            last_ckpt = time.perf_counter()
            yield TrainProgress(
                "epoch", epoch * n_valid, total, None, None,
                message=f"epoch {epoch}/{cfg.epochs} done, loss {hist['epoch_loss'][-1]:.4f}",
                epoch=epoch, epochs=cfg.epochs, loss=hist["epoch_loss"][-1],
            )  # fmt: skip
        if self.batchnorm == "train":
            calibrated = yield from self.calibrate_batchnorm(cancel)
            if not calibrated:  # the trained weights are in the checkpoint; --resume redoes this
                result.cancelled = True
                result.epochs_done = epoch
                return result
        result.epochs_done = epoch
        result.epoch_loss = list(hist["epoch_loss"])
        result.epoch_seconds = list(hist["epoch_seconds"])
        result.output = self._write_output(result)
        self.checkpoint.unlink(missing_ok=True)
        if not cfg.keep_cache:
            self.cache.remove()
        return result

    def calibrate_batchnorm(self, cancel: threading.Event) -> Generator[Progress, None, bool]:
        """Precise BN: layer4's running statistics re-estimated over every clean (view 0) image.

        During training they were a momentum average over the last batches of a moving
        network; retrieval runs in eval mode, so it gets averages over all the images under
        the final weights. Cancelled, the model keeps the statistics it had.
        """
        valid = self.cache.valid_indices()
        step = max(2, self.cfg.batch_size)
        clean = (
            self._layer3(idx, np.zeros(len(idx), np.int64))
            for idx in (valid[i : i + step] for i in range(0, len(valid), step))
        )
        runs = reestimate_batchnorm(self.model.trunk.last, clean, self._run_layer4)
        try:
            while not cancel.is_set():  # checked before every batch
                done = next(runs, None)
                if done is None:
                    return True
                yield TrainProgress(
                    "calibrate", done, len(valid), None, None,
                    message=f"re-estimating BatchNorm statistics {done}/{len(valid)}",
                )  # fmt: skip
            return False
        finally:
            runs.close()  # an unfinished re-estimation puts the old statistics back
            self.model.eval()

    def _write_output(self, result: TrainResult) -> Path:
        cfg = self.cfg
        meta = {
            "trained": cfg.train,
            "dataset": str(self.data.root),
            "unlabelled": cfg.unlabelled,
            "classes": len(self.data.classes),
            "images": len(self.cache.valid_indices()),
            "epochs": result.epochs_done,
            "views": cfg.views,
            "margin": cfg.margin,
            "scale": cfg.scale,
            "batchnorm": self.batchnorm,
            "input_size": self.size,
            "backbone": self.model.spec.name,
            "base_weights": self.weights.tag,
            "base_source": self.weights.source,
            "final_loss": result.epoch_loss[-1] if result.epoch_loss else None,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "imgfinder": __version__,
        }
        out: dict = {"head": self.model.head_state(), "meta": meta}
        if cfg.train == "layer4":
            out = {
                "format": BUNDLE_FORMAT,
                "arch": self.model.spec.name,
                "backbone": self.model.backbone_state(),
                **out,
            }
        with atomic_write(self.output) as fh:
            torch.save(out, fh)
        log.info("wrote %s", self.output)
        return self.output


def train(
    cfg: TrainConfig,
    *,
    cancel: threading.Event | None = None,
    resume: bool = False,
    allow_download: bool = True,
) -> Generator[Progress, None, TrainResult]:
    """Cache trunk features, then train; yields Progress per batch, returns a TrainResult."""
    trainer = Trainer(cfg, resume=resume, allow_download=allow_download)
    return (yield from trainer.run(cancel or threading.Event()))


@dataclass
class ModelFile:
    """A selectable file in the models folder, for a settings dialog's list."""

    path: Path
    kind: str  # "head" (ModelConfig.head), "bundle" or "backbone" (ModelConfig.weights)
    meta: dict


def list_model_files(directory: str | Path | None = None) -> list[ModelFile]:
    """Heads and weights under `models_dir()` (*.pt, *.pth); unreadable files are skipped."""
    folder = Path(directory) if directory else paths.models_dir()
    found = []
    for f in sorted([*folder.glob("*.pt"), *folder.glob("*.pth")]):
        try:
            state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # a half-copied or foreign file must not break the list
            log.warning("skipping %s: %s", f, exc)
            continue
        if not isinstance(state, dict):
            continue
        meta = state.get("meta") if isinstance(state.get("meta"), dict) else {}
        kind, _ = classify_state(state)
        if kind is not None:
            found.append(ModelFile(f, kind, meta))
    return found

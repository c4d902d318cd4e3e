"""Shared helpers for the benchmark scripts (weights without a network, timing, memory)."""

from __future__ import annotations

import os
import resource
import statistics
import time
from pathlib import Path

# 960 labelled flower photos (12 classes), beside the repository; never copied into it
DEFAULT_DATASET = Path(
    os.environ.get("IMGFINDER_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared/data/oxford-flowers17-12class"
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def dataset_files(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(files, labels) of a folder-per-class set, sorted, optionally only some classes."""
    names = classes or sorted(d.name for d in root.iterdir() if d.is_dir())
    files, labels = [], []
    for c in names:
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(str(f))
                labels.append(c)
    return files, labels


def seeded_weights(directory: Path) -> Path:
    """ImageNet weights cannot be downloaded here: a seeded random-init ResNet50 instead.

    Speed does not depend on the weight values; quality figures must say which were used.
    """
    import torch
    from torchvision.models import resnet50

    path = directory / "resnet50-seed0.pth"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(resnet50(weights=None).state_dict(), path)
    return path


def weights_for_bench(directory: Path) -> tuple[str, str]:
    """(path, description): IMGFINDER_WEIGHTS if set, else seeded random init."""
    env = os.environ.get("IMGFINDER_WEIGHTS")
    if env:
        return env, f"local weights {env}"
    return str(seeded_weights(directory)), "seeded random-init ResNet50 (no ImageNet weights here)"


def timed(fn, repeat: int = 1) -> float:
    """Median wall seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    out = ["  ".join(c.ljust(widths[c]) for c in columns)]
    out.append("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        out.append("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))
    return "\n".join(out)


def backbone_weights(backbone: str, directory: Path) -> tuple[str | None, str]:
    """(weights for ModelConfig, description) for a backbone name.

    A backbone whose weights ship in an installed package (EfficientNet-Lite0) uses them
    (None: the product's default); ResNet50 uses `weights_for_bench`.
    """
    from imgfinder.core.modelspec import get_spec

    spec = get_spec(backbone)
    if spec.weights_package:
        return None, f"{spec.title} ImageNet weights from the installed {spec.pip_name} package"
    return weights_for_bench(directory)

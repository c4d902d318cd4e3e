"""FusedECA: a backbone's trunk, ECA-weighted average branch and max branch fused into 2·C.

Seed paper: "Similar Image Retrieval Algorithm Based on Feature Fusion and
Locality-Sensitive Hash" (ResNet50: C = 2048, a 4096-d descriptor). Branch 1 applies
Efficient Channel Attention to the last stage's map and average-pools it; branch 2
max-pools the same map. The backbone comes from a `BackboneSpec` (`core/modelspec.py`). Each branch is
L2-normalised, the two are concatenated and normalised again, so the dot product
of two descriptors is their cosine similarity and each branch contributes half.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from imgfinder.core.backbones import build_trunk, load_native_state, native_state
from imgfinder.core.modelspec import BackboneSpec, eca_kernel_size, get_spec

__all__ = ["ECA", "FusedECA", "FusedOutput", "eca_kernel_size"]


class ECA(nn.Module):
    """Efficient Channel Attention: GAP -> 1-D conv across channels -> sigmoid weights.

    Untrained, the conv kernel is a centred delta (weight 1 on the channel itself):
    each channel is gated by sigmoid(its own mean activation). That is deterministic,
    needs no randomness to reproduce, keeps the descriptor a function of the backbone
    alone, and does not mix neighbouring channels, whose order in an ImageNet ResNet
    carries no meaning until the kernel is trained. Trained heads replace it.
    """

    def __init__(self, channels: int):
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

    descriptor: torch.Tensor  # (N, 2C) L2-normalised
    fmap: torch.Tensor  # (N, C, h, w) last-stage activations
    eca: torch.Tensor  # (N, C) ECA channel weights


class FusedECA(nn.Module):
    """A backbone's trunk up to its last stage, then the ECA/avg and max branches."""

    def __init__(self, spec: BackboneSpec | str | None = None) -> None:
        super().__init__()
        self.spec = spec if isinstance(spec, BackboneSpec) else get_spec(spec)
        self.trunk = build_trunk(self.spec)
        self.eca = ECA(self.spec.channels)

    @property
    def dim(self) -> int:
        return self.spec.descriptor_dim

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load the backbone's own state dict (classifier ignored); strict about the rest."""
        load_native_state(self.trunk, state)

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The trunk under the backbone's own key names (what load_backbone takes)."""
        return native_state(self.trunk)

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

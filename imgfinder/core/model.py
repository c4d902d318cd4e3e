"""FusedECA: a backbone's trunk, ECA-weighted average branch and max branch fused into 2·C.

Seed paper: "Similar Image Retrieval Algorithm Based on Feature Fusion and
Locality-Sensitive Hash" (ResNet50: C = 2048, a 4096-d descriptor). Branch 1 applies
Efficient Channel Attention to the last stage's map and average-pools it; branch 2
max-pools the same map. The backbone comes from a `BackboneSpec` (`core/modelspec.py`). Each branch is
L2-normalised, the two are concatenated and normalised again, so the dot product
of two descriptors is their cosine similarity and each branch contributes half.

Two alternatives from the retrieval papers, each its own model id (`ModelConfig.attention`,
`ModelConfig.pooling`):
- CBAM (Woo et al. 2018; the CBAM + LSH paper, Luo et al. 2022) in place of ECA on the
  attention branch: a channel MLP over the average- and max-pooled map, then a 7x7
  spatial attention over the channel-mean and channel-max maps. Untrained, both last
  layers are zero, so every channel and every position is weighted sigmoid(0) = 1/2: the
  branch is plain average pooling (a constant factor vanishes in the normalisation), i.e.
  it changes little. Training moves the zero layers first.
- GeM (generalised mean, Radenović et al. 2018) in place of the max branch:
  (mean x^p)^(1/p) per channel with p = 3 untrained and learnable in training (p = 1 is
  average pooling, p -> infinity max pooling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from imgfinder.core.backbones import build_trunk, load_native_state, native_state
from imgfinder.core.modelspec import ATTENTIONS, POOLINGS, BackboneSpec, eca_kernel_size, get_spec

__all__ = ["CBAM", "ECA", "GeM", "FusedECA", "FusedOutput", "eca_kernel_size"]


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


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention.

    Channel: sigmoid(MLP(avg) + MLP(max)), the MLP C -> C/r -> C shared by both pools.
    Spatial: sigmoid(conv7x7([mean over channels, max over channels])) on the
    channel-weighted map. Untrained, the MLP's second layer and the 7x7 conv are zero
    (the first layer is a fixed seeded draw), so both attentions are a constant 1/2 and
    the descriptor does not depend on the draw: that is what makes "cbam0" one model id.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel: int = 7):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=True),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=True),
        )
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            first = self.mlp[0]
            bound = 1.0 / math.sqrt(first.in_features)
            first.weight.copy_(torch.rand(first.weight.shape, generator=gen) * 2 * bound - bound)
            first.bias.zero_()
            self.mlp[2].weight.zero_()
            self.mlp[2].bias.zero_()
            self.spatial.weight.zero_()
            self.spatial.bias.zero_()

    def channel_weights(self, fmap: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C) channel attention in (0, 1)."""
        return torch.sigmoid(self.mlp(fmap.mean(dim=(2, 3))) + self.mlp(fmap.amax(dim=(2, 3))))

    def spatial_weights(self, fmap: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
        """(N, H, W) spatial attention in (0, 1) of the channel-weighted map."""
        x = fmap * channel[:, :, None, None]
        pooled = torch.stack([x.mean(dim=1), x.amax(dim=1)], dim=1)
        return torch.sigmoid(self.spatial(pooled)).squeeze(1)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        w = self.channel_weights(fmap)
        return fmap * w[:, :, None, None] * self.spatial_weights(fmap, w)[:, None]


class GeM(nn.Module):
    """Generalised-mean pooling per channel, (mean clamp(x, eps)^p)^(1/p), p learnable."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([float(p)]))
        self.eps = eps

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        return fmap.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


@dataclass
class FusedOutput:
    """Descriptor plus what the heatmaps need, so nothing has to be re-run for them."""

    descriptor: torch.Tensor  # (N, 2C) L2-normalised
    fmap: torch.Tensor  # (N, C, h, w) last-stage activations
    eca: torch.Tensor  # (N, C) channel weights of the attention head (ECA or CBAM)
    spatial: torch.Tensor | None = None  # (N, h, w) CBAM's spatial attention; None for ECA
    gem_p: float | None = None  # the GeM exponent when the second branch is GeM, else max


class FusedECA(nn.Module):
    """A backbone's trunk up to its last stage, then the attention/avg and max (or GeM)
    branches. `eca` is the attention head whatever its kind (ECA or CBAM), so the trainer
    trains either; `gem` is the GeM pooling of the second branch (None: max pooling)."""

    def __init__(
        self, spec: BackboneSpec | str | None = None, attention: str = "eca", pooling: str = "max"
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; choose one of {ATTENTIONS}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        self.spec = spec if isinstance(spec, BackboneSpec) else get_spec(spec)
        self.attention, self.pooling = attention, pooling
        self.trunk = build_trunk(self.spec)
        self.eca = ECA(self.spec.channels) if attention == "eca" else CBAM(self.spec.channels)
        self.gem = GeM() if pooling == "gem" else None

    @property
    def pooled_head(self) -> bool:
        """True when the descriptor follows from the map's per-channel mean and max alone
        (ECA + max: what the trainer's pooled cache holds); CBAM and GeM need the map."""
        return self.attention == "eca" and self.gem is None

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
        """The head's tensors: ECA's `conv.weight` as before; CBAM's `mlp.* / spatial.*`;
        GeM's exponent as `gem.p`."""
        state = {k: v.detach().cpu().clone() for k, v in self.eca.state_dict().items()}
        if self.gem is not None:
            state["gem.p"] = self.gem.p.detach().cpu().clone()
        return state

    def load_head(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        p = state.pop("gem.p", None)
        if (p is None) != (self.gem is None):
            raise RuntimeError(
                "the head file was trained with "
                + ("GeM pooling" if p is not None else "max pooling")
                + f", the model uses {'GeM' if self.gem is not None else 'max'} pooling"
            )
        self.eca.load_state_dict(state, strict=True)
        if p is not None:
            with torch.no_grad():
                self.gem.p.copy_(p.reshape(1))

    def fuse(self, fmap: torch.Tensor) -> FusedOutput:
        weights = self.eca.channel_weights(fmap)
        spatial = None
        attended = fmap * weights[:, :, None, None]
        if isinstance(self.eca, CBAM):
            spatial = self.eca.spatial_weights(fmap, weights)
            attended = attended * spatial[:, None]
        avg = attended.mean(dim=(2, 3))
        second = fmap.amax(dim=(2, 3)) if self.gem is None else self.gem(fmap)
        desc = torch.cat([F.normalize(avg, dim=1), F.normalize(second, dim=1)], dim=1)
        desc = F.normalize(desc, dim=1)
        gem_p = None if self.gem is None else float(self.gem.p.detach().clamp(min=1.0))
        return FusedOutput(descriptor=desc, fmap=fmap, eca=weights, spatial=spatial, gem_p=gem_p)

    def forward_maps(self, x: torch.Tensor) -> FusedOutput:
        return self.fuse(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_maps(x).descriptor

"""ArcFace: softmax over s*cos(theta), with an additive angular margin m on the true class.

Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition" (2019).
Both the embedding and the class centres are L2-normalised, so training pulls each
descriptor's *angle* towards its class centre: exactly the quantity cosine search ranks by.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ArcFace(nn.Module):
    """Class centres (classes x dim) and the margin loss on normalised embeddings."""

    def __init__(self, dim: int, classes: int, margin: float = 0.3, scale: float = 30.0):
        super().__init__()
        if classes < 2:
            raise ValueError("ArcFace needs at least two classes")
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(f"margin {margin} out of range [0, pi/2)")
        self.margin = float(margin)
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(classes, dim))
        nn.init.normal_(self.weight, std=0.01)
        self._cos_m, self._sin_m = math.cos(margin), math.sin(margin)
        # beyond theta = pi - m, cos(theta + m) stops decreasing; fall back to a linear penalty
        self._threshold = math.cos(math.pi - margin)
        self._linear = math.sin(math.pi - margin) * margin

    @torch.no_grad()
    def init_centres(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Start each class centre at the mean of its members' embeddings (faster, stabler)."""
        sums = torch.zeros_like(self.weight)
        sums.index_add_(0, labels.to(sums.device), embeddings.to(sums))
        counts = torch.bincount(labels, minlength=self.weight.shape[0]).to(sums)
        seen = counts > 0
        self.weight[seen] = F.normalize(sums[seen] / counts[seen, None], dim=1)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosine(embeddings).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        target = cos.gather(1, labels[:, None])
        sin = torch.sqrt(1.0 - target * target)
        with_margin = target * self._cos_m - sin * self._sin_m  # cos(theta + m)
        with_margin = torch.where(target > self._threshold, with_margin, target - self._linear)
        return self.scale * cos.scatter(1, labels[:, None], with_margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the margin logits."""
        return F.cross_entropy(self.logits(embeddings, labels), labels)

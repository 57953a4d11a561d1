"""AAM-softmax (ArcFace) classifier head, as 3D-Speaker's ``ArcMarginLoss``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812


class AAMSoftmax(torch.nn.Module):
    """Cosine classifier with an additive angular margin on the target class.

    ``forward(embeddings, labels, margin)``: the margin is an argument so that it can be
    warmed up; ``scale`` is fixed. Only used in training (never saved with the model).
    """

    def __init__(self, embedding_size: int, num_classes: int, scale: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(num_classes, embedding_size))
        torch.nn.init.xavier_uniform_(self.weight)
        self.scale = scale

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
        """Scaled cosines with ``cos(theta + margin)`` for each row's target class."""
        cosine = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
        sine = torch.sqrt((1.0 - cosine * cosine).clamp(1e-7, 1.0))
        phi = cosine * math.cos(margin) - sine * math.sin(margin)
        # Past theta = pi - margin, cos(theta + m) is no longer decreasing: use the
        # linear extension, as 3D-Speaker and insightface do.
        th = math.cos(math.pi - margin)
        mm = math.sin(math.pi - margin) * margin
        phi = torch.where(cosine > th, phi, cosine - mm)
        one_hot = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        return self.scale * (one_hot * phi + (1.0 - one_hot) * cosine)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, margin: float
    ) -> torch.Tensor:
        """Mean cross-entropy of the margin logits."""
        return F.cross_entropy(self.logits(embeddings, labels, margin), labels)

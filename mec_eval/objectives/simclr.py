"""SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020).

NT-Xent (paper Eq. 1): for each of the ``2m`` embeddings, cross-entropy over the cosine similarities
to the other ``2m - 1`` embeddings divided by the temperature, with the other view of the same
image as the positive; averaged over all ``2m`` anchors. Negatives span the global batch.

Example:
    >>> objective = SimCLRLoss(temperature=0.1)
    >>> loss = objective([z1, z2], [z1, z2])   # student projections; targets are unused
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mec_eval.dist import gather_with_grad
from mec_eval.objectives.base import Objective, check_two_views, full_precision, upcast
from mec_eval.utils import UserError


class SimCLRLoss(Objective):
    """SimCLR NT-Xent: no predictor, no teacher; a joint loss on the two student projections."""

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if not temperature > 0:
            raise UserError(f"loss.temperature must be positive, got {temperature}")
        self.temperature = temperature

    @classmethod
    def from_config(cls, cfg) -> "SimCLRLoss":
        return cls(temperature=cfg.temperature)

    def forward(self, online: Sequence[Tensor], target: Sequence[Tensor] = ()) -> Tensor:
        check_two_views(online)
        with full_precision(online[0]):
            z = F.normalize(torch.cat([upcast(gather_with_grad(x)) for x in online]), dim=1)
            n = z.shape[0]
            logits = z @ z.T / self.temperature
            self_pairs = torch.eye(n, dtype=torch.bool, device=z.device)
            logits = logits.masked_fill(self_pairs, float("-inf"))
            # Row i (view 1 of image i) has its positive at i + m, and row i + m at i.
            positives = torch.arange(n, device=z.device).roll(n // 2)
            return F.cross_entropy(logits, positives)

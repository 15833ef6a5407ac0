"""Barlow Twins (Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021).

Cross-correlation ``C = z1n^T z2n / m`` of the batch-normalised embeddings of the two views, pushed
to the identity (paper Eq. 1): ``L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2``,
``lambda = 0.0051``. MEC's feature-wise second-order expansion has this form (MEC paper Eq. 24-25).
The normalisation is ``BatchNorm1d(affine=False)`` in training mode as in the authors' code (biased
variance, eps 1e-5), over the global batch.

Example:
    >>> objective = BarlowTwinsLoss(lambd=0.0051)
    >>> loss = objective([z1, z2], [z1, z2])   # student projections; targets are unused
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from mec_eval.dist import gather_with_grad
from mec_eval.objectives.base import Objective, check_two_views, full_precision, upcast

BN_EPS = 1e-5


def _batch_norm(z: Tensor) -> Tensor:
    """Affine-free batch normalisation along the batch dimension."""
    centred = z - z.mean(dim=0)
    return centred / torch.sqrt(centred.pow(2).mean(dim=0) + BN_EPS)


class BarlowTwinsLoss(Objective):
    """Barlow Twins: no predictor, no teacher; a joint loss on the two student projections."""

    def __init__(self, lambd: float = 0.0051):
        super().__init__()
        self.lambd = lambd

    @classmethod
    def from_config(cls, cfg) -> "BarlowTwinsLoss":
        return cls(lambd=cfg.barlow_lambda)

    def forward(self, online: Sequence[Tensor], target: Sequence[Tensor] = ()) -> Tensor:
        check_two_views(online)
        with full_precision(online[0]):
            z1, z2 = (_batch_norm(upcast(gather_with_grad(x))) for x in online)
            c = z1.T @ z2 / z1.shape[0]
            diagonal = torch.diagonal(c)
            on_diag = (1 - diagonal).pow(2).sum()
            off_diag = c.pow(2).sum() - diagonal.pow(2).sum()
            return on_diag + self.lambd * off_diag

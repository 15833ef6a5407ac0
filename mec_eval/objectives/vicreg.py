"""VICReg (Bardes et al., "VICReg: Variance-Invariance-Covariance Regularization", ICLR 2022).

``L = 25 * s(Z, Z') + 25 * [v(Z) + v(Z')] + 1 * [c(Z) + c(Z')]`` (paper Eq. 6): invariance ``s`` is
the mean squared error; variance ``v`` the mean hinge ``max(0, 1 - sqrt(Var(z_j) + 1e-4))``
(halved per branch as in the authors' code); covariance ``c`` the sum of squared off-diagonal
covariances divided by ``d``. Statistics use the global batch.

Example:
    >>> objective = VICRegLoss(sim=25.0, var=25.0, cov=1.0)
    >>> loss = objective([z1, z2], [z1, z2])   # student projections; targets are unused
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mec_eval.dist import gather_with_grad
from mec_eval.objectives.base import Objective, check_two_views, full_precision, upcast

VAR_EPS = 1e-4
STD_TARGET = 1.0


def _variance_hinge(z: Tensor) -> Tensor:
    return F.relu(STD_TARGET - torch.sqrt(z.var(dim=0) + VAR_EPS)).mean()


def _covariance_penalty(z: Tensor) -> Tensor:
    m, d = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (m - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


class VICRegLoss(Objective):
    """VICReg: no predictor, no teacher; a joint loss on the two student projections."""

    def __init__(self, sim: float = 25.0, var: float = 25.0, cov: float = 1.0):
        super().__init__()
        self.sim, self.var, self.cov = sim, var, cov

    @classmethod
    def from_config(cls, cfg) -> "VICRegLoss":
        return cls(sim=cfg.vicreg_sim, var=cfg.vicreg_var, cov=cfg.vicreg_cov)

    def forward(self, online: Sequence[Tensor], target: Sequence[Tensor] = ()) -> Tensor:
        check_two_views(online)
        with full_precision(online[0]):
            z1, z2 = (upcast(gather_with_grad(x)) for x in online)
            invariance = F.mse_loss(z1, z2)
            variance = (_variance_hinge(z1) + _variance_hinge(z2)) / 2
            covariance = _covariance_penalty(z1) + _covariance_penalty(z2)
            terms = torch.stack([invariance, variance, covariance]).tolist()  # one device sync, not three
            self.stats = dict(zip(("invariance", "variance", "covariance"), terms))
            return self.sim * invariance + self.var * variance + self.cov * covariance

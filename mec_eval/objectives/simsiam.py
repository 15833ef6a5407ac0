"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021).

Symmetrised negative cosine similarity with a stop-gradient on the target (paper Eq. 1-2, Alg. 1):
``L = D(p1, stopgrad(z2)) / 2 + D(p2, stopgrad(z1)) / 2``, ``D(p, z) = -cos(p, z)`` averaged over the
batch. It is MEC's first-order expansion up to the scale ``mu * lam`` (MEC paper Eq. 22-23).

Example:
    >>> objective = SimSiamLoss()
    >>> loss = objective([p1, p2], [z1, z2])   # predictor outputs, student projections
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from mec_eval.objectives.base import Objective, check_two_views, full_precision, upcast


class SimSiamLoss(Objective):
    """SimSiam: predictor on the online branch, no teacher, stop-gradient on the targets."""

    default_predictor = True
    stop_gradient_target = True

    def forward(self, online: Sequence[Tensor], target: Sequence[Tensor]) -> Tensor:
        check_two_views(online, target)
        with full_precision(online[0]):
            p1, p2 = (upcast(x) for x in online)
            # Detached here as well, so the stop-gradient holds whatever the engine passes in.
            z1, z2 = (upcast(x.detach()) for x in target)
            return -0.5 * (F.cosine_similarity(p1, z2, dim=1).mean()
                           + F.cosine_similarity(p2, z1, dim=1).mean())

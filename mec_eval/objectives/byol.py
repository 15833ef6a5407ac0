"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020).

Mean squared error between the L2-normalised online prediction and the target projection of the
other view (paper Eq. 2), ``||q/|q| - z'/|z'|||^2 = 2 - 2 cos(q, z')``, symmetrised as
``L + L~`` (Eq. 3) and averaged over the batch. Targets come from the EMA teacher (no gradient).

Example:
    >>> objective = BYOLLoss()
    >>> loss = objective([q1, q2], [t1, t2])   # online predictions, teacher projections
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from mec_eval.objectives.base import Objective, check_two_views, full_precision, upcast


def _normalized_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """``mean_i ||q_i/|q_i| - z_i/|z_i|||^2``, with no gradient into the target."""
    return (F.normalize(prediction, dim=1) - F.normalize(target.detach(), dim=1)).pow(2).sum(dim=1).mean()


class BYOLLoss(Objective):
    """BYOL: predictor on the online branch, targets from the EMA teacher."""

    default_predictor = True
    default_teacher = True

    def forward(self, online: Sequence[Tensor], target: Sequence[Tensor]) -> Tensor:
        check_two_views(online, target)
        with full_precision(online[0]):
            q1, q2 = (upcast(x) for x in online)
            t1, t2 = (upcast(x) for x in target)
            return _normalized_mse(q1, t2) + _normalized_mse(q2, t1)

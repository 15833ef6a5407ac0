"""Any objective plus MEC as a regulariser (Liu et al., NeurIPS 2022, Sec. 3.4 and Figure 5).

``loss = base(online, target) + weight * MEC(online, target)`` where the MEC term is
:class:`~mec_eval.objectives.mec.MECLoss` itself (the order-n Taylor coding length of Eq. 3 between
each view's online output and the other view's target, divided by ``lam``, with its lam warm-up),
built from the same ``loss.eps_d2`` / ``loss.order`` / ``loss.side`` / ``loss.lam_warmup_epochs``.
The wrapped objective keeps its own architecture flags (predictor, teacher, stop-gradient), so
SimSiam+MEC regularises SimSiam's predictor outputs against its detached projections and
SimCLR+MEC its two projections. The paper states no weight for Figure 5; ``loss.regularizer_weight``
defaults to 1 (MEC's own loss at weight 1 is, at order 1, the negative mean cosine: the scale of
SimSiam's loss).

Example:
    >>> objective = MECRegularized(SimCLRLoss(temperature=0.1), weight=1.0, eps_d2=0.06)
    >>> loss = objective([z1, z2], [z1, z2])
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from mec_eval.objectives.base import Objective
from mec_eval.objectives.mec import MECLoss
from mec_eval.utils import UserError

REGULARIZERS = ("none", "mec")


class MECRegularized(Objective):
    """``base + weight * MECLoss``; at weight 0 the MEC term is not computed (the base loss, bit for bit)."""

    def __init__(self, base: Objective, weight: float, eps_d2: float = 0.06, order: int = 4, side: str = "auto",
                 warmup_epochs: float = 10.0):
        super().__init__()
        if not weight >= 0:
            raise UserError(f"loss.regularizer_weight must be >= 0, got {weight}")
        self.base, self.weight = base, float(weight)
        self.mec = MECLoss(eps_d2=eps_d2, order=order, side=side, warmup_epochs=warmup_epochs)
        # The network is built for the base objective (build_network reads these flags).
        self.default_predictor = base.default_predictor
        self.default_teacher = base.default_teacher
        self.stop_gradient_target = base.stop_gradient_target

    def on_step(self, epoch: float) -> None:
        self.base.on_step(epoch)
        self.mec.on_step(epoch)

    def forward(self, online: Sequence[Tensor], target: Sequence[Tensor]) -> Tensor:
        loss = self.base(online, target)
        self.stats = dict(self.base.stats)
        if self.weight == 0:
            return loss
        term = self.mec(online, target)
        self.stats.update({"base_loss": float(loss.detach()), "mec_reg": float(term.detach()),
                           "mec": self.mec.stats["mec"], "lam": self.mec.stats["lam"]})
        return loss + self.weight * term


def with_regularizer(objective: Objective, cfg) -> Objective:
    """``objective`` wrapped as ``cfg.regularizer`` says (``LossConfig``: "none" or "mec")."""
    name = getattr(cfg, "regularizer", "none")  # a loss config from before the field: no regulariser
    if name == "none":
        return objective
    if name != "mec":
        raise UserError(f"unknown loss.regularizer '{name}' (choose {' or '.join(REGULARIZERS)})")
    if cfg.name == "mec":
        raise UserError("loss.regularizer=mec on loss.name=mec adds MEC to itself; use loss.regularizer=none")
    return MECRegularized(objective, cfg.regularizer_weight, cfg.eps_d2, cfg.order, cfg.side, cfg.lam_warmup_epochs)

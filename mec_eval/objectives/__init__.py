"""Self-supervised objectives, one file per loss, looked up by name from ``LossConfig.name``."""
from __future__ import annotations

from mec_eval.objectives.barlow_twins import BarlowTwinsLoss
from mec_eval.objectives.base import Objective
from mec_eval.objectives.byol import BYOLLoss
from mec_eval.objectives.mec import MECLoss, coding_length, mec_loss
from mec_eval.objectives.regularized import MECRegularized, with_regularizer
from mec_eval.objectives.simclr import SimCLRLoss
from mec_eval.objectives.simsiam import SimSiamLoss
from mec_eval.objectives.vicreg import VICRegLoss
from mec_eval.registry import Registry

OBJECTIVES: Registry[type[Objective]] = Registry("objective")
for _name, _cls, _help in (
    ("mec", MECLoss, "Maximum Entropy Coding, order-n Taylor log-det (Liu et al., NeurIPS 2022)"),
    ("simsiam", SimSiamLoss, "SimSiam negative cosine with stop-gradient (Chen & He, CVPR 2021)"),
    ("byol", BYOLLoss, "BYOL normalised MSE to an EMA teacher (Grill et al., NeurIPS 2020)"),
    ("barlow_twins", BarlowTwinsLoss, "Barlow Twins redundancy reduction (Zbontar et al., ICML 2021)"),
    ("simclr", SimCLRLoss, "SimCLR NT-Xent contrastive loss (Chen et al., ICML 2020)"),
    ("vicreg", VICRegLoss, "VICReg variance-invariance-covariance (Bardes et al., ICLR 2022)"),
):
    OBJECTIVES.register(_name, help=_help)(_cls)


def build_objective(cfg) -> Objective:
    """The objective named ``cfg.name``, built from the ``LossConfig`` ``cfg``; a typo is a ``UserError``."""
    return with_regularizer(OBJECTIVES.get(cfg.name).from_config(cfg), cfg)


__all__ = [
    "OBJECTIVES", "build_objective", "Objective", "mec_loss", "coding_length", "MECLoss", "SimSiamLoss",
    "BYOLLoss", "BarlowTwinsLoss", "SimCLRLoss", "VICRegLoss",
]

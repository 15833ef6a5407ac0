"""The two-branch network of Siamese self-supervised learning (MEC Fig. 2, App. C).

Student = backbone + projector (+ predictor on the asymmetric branch); target branch = an EMA
teacher (MEC, BYOL), the detached student (SimSiam), or the student itself (Barlow Twins, VICReg,
SimCLR, which use both online outputs).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mec_eval.models.backbones import build_backbone
from mec_eval.models.heads import build_predictor, build_projector
from mec_eval.models.teacher import EMATeacher


class SiameseNetwork(nn.Module):
    def __init__(self, arch: str, proj_hidden: int, proj_dim: int, proj_layers: int,
                 predictor: bool, pred_hidden: int, teacher: bool, stop_gradient_target: bool):
        super().__init__()
        self.backbone = build_backbone(arch)
        self.projector = build_projector(self.backbone.feature_dim, proj_hidden, proj_dim, proj_layers)
        self.predictor = build_predictor(proj_dim, pred_hidden) if predictor else None
        self.teacher = EMATeacher(nn.Sequential(self.backbone, self.projector)) if teacher else None
        self.stop_gradient_target = stop_gradient_target

    def student(self) -> nn.Sequential:
        """Backbone + projector as one module (what the teacher averages)."""
        return nn.Sequential(self.backbone, self.projector)

    def forward(self, views: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Returns (online, target): one [m, proj_dim] tensor per view for each branch."""
        # Each view goes through separately, as in the official code, so BatchNorm statistics are
        # per view (a joint pass would leak batch statistics between the two views).
        projections = [self.projector(self.backbone(v)) for v in views]
        online = [self.predictor(z) for z in projections] if self.predictor is not None else projections
        if self.teacher is not None:
            target = [self.teacher(v) for v in views]
        elif self.stop_gradient_target:
            target = [z.detach() for z in projections]
        else:
            target = projections
        return online, target

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        if self.teacher is not None:
            self.teacher.update(self.student(), momentum)

    def heads_state(self) -> dict[str, dict]:
        heads = {"projector": self.projector.state_dict()}
        if self.predictor is not None:
            heads["predictor"] = self.predictor.state_dict()
        return heads

    def teacher_backbone_state(self) -> dict | None:
        """The teacher's backbone weights under torchvision names (for evaluating the teacher)."""
        if self.teacher is None:
            return None
        full = self.teacher.module.state_dict()
        return {k[len("0."):]: v for k, v in full.items() if k.startswith("0.")}

"""Exponential-moving-average teacher with BYOL's cosine momentum schedule."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """Momentum at ``step``: ``final - (final - base) * (cos(pi * step / total) + 1) / 2`` (BYOL Eq. 7)."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


class EMATeacher(nn.Module):
    """A frozen copy of a student module updated as ``t <- m t + (1 - m) s``.

    Only parameters are averaged; BatchNorm running statistics are the teacher's own, as in the
    official MEC code (``mec/builder.py`` copies parameters, not buffers).
    """

    def __init__(self, student: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(student)
        for param in self.module.parameters():
            param.requires_grad = False

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        teacher_params = list(self.module.parameters())
        student_params = [p.detach() for p in student.parameters()]
        torch._foreach_mul_(teacher_params, momentum)
        torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)

    def forward(self, x):
        with torch.no_grad():
            return self.module(x)

"""A grid of linear-probe heads trained in one pass over the frozen backbone (DINOv2 ``eval/linear.py``).

The paper's probe (MEC ``main_lincls.py``) fixes one learning rate; searching it the official way
means one job per value, each paying for the backbone's forward pass on every batch. Here k heads,
one per (base lr, head kind), sit side by side on the same frozen features: every batch goes
through the backbone once and through all k heads. Each head is its own parameter group with its
own scaled lr, and the training loss is the sum of the heads' losses, so every head's gradient is
exactly its own loss's: head i ends where a separate run at lr i with the same seed would (the
tests check this). The heads are compared on a seeded part of the training split held out from
training (never on the test split); only the selected head is scored on the test split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from mec_eval.data.subsets import holdout_split
from mec_eval.tasks.configs import LinearGridParams
from mec_eval.tasks.training import linear_head
from mec_eval.training.schedule import scaled_lr
from mec_eval.utils import UserError


def make_head(kind: str, dim: int, num_classes: int) -> nn.Module:
    """``bn``: affine-free BatchNorm + linear layer (main_lincls.py); ``linear``: the linear layer alone."""
    layer = linear_head(dim, num_classes)
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), layer) if kind == "bn" else layer


@dataclass(frozen=True)
class GridPoint:
    """One head of the grid: its kind and base lr (the scaled lr is base lr x effective batch / 256)."""
    kind: str
    base_lr: float

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.base_lr:g}"


def grid_points(grid: LinearGridParams, default_lr: float) -> list[GridPoint]:
    """The grid's heads in a fixed order: kinds outer, base lrs inner (``[default_lr]`` when none is given)."""
    lrs = list(grid.base_lrs) or [default_lr]
    points = [GridPoint(kind, float(lr)) for kind in grid.heads for lr in lrs]
    if len(set(points)) != len(points):
        raise UserError(f"grid.base_lrs / grid.heads repeat a head ({', '.join(p.label for p in points)}); "
                        "list each base lr and head kind once")
    return points


class HeadGrid(nn.Module):
    """k heads on the same features; ``forward`` returns logits [B, k, C].

    Every head is initialised after ``torch.manual_seed(seed)``, as a separate run with that seed
    initialises its one head, so head i starts (and, trained alone, ends) exactly as that run.
    """

    def __init__(self, points: list[GridPoint], dim: int, num_classes: int, seed: int):
        super().__init__()
        heads = []
        for point in points:
            torch.manual_seed(seed)
            heads.append(make_head(point.kind, dim, num_classes))
        self.heads = nn.ModuleList(heads)
        self.points = list(points)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(feats) for head in self.heads], dim=1)

    def param_groups(self, effective_batch: int, lr_scaling: str) -> list[dict]:
        """One optimiser group per head, each at its own scaled peak lr (the schedule scales them alike)."""
        return [{"params": list(head.parameters()), "lr": scaled_lr(point.base_lr, effective_batch, lr_scaling)}
                for head, point in zip(self.heads, self.points)]


def split_for_selection(train: Dataset, train_eval: Dataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    """The heads train on one part of ``train`` (augmented) and are compared on the rest (test transform).

    The held-out part is ssl-transfer's seeded hold-out (:func:`mec_eval.data.subsets.holdout_split`).
    """
    fit, held = holdout_split(len(train), fraction, seed)
    if len(held) < 1 or len(fit) < 2:
        raise UserError(f"grid.val_fraction={fraction:g} of the {len(train)} training images holds out {len(held)} "
                        f"and leaves {len(fit)} to train on; need >= 1 and >= 2: change grid.val_fraction")
    return Subset(train, np.sort(fit).tolist()), Subset(train_eval, np.sort(held).tolist())


def select_head(val_top1: list[float]) -> int:
    """Index of the best held-out top-1; ties go to the earlier head (the grid's order is fixed)."""
    return int(np.argmax(np.asarray(val_top1)))

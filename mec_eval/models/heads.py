"""Projector and predictor MLPs of MEC (paper App. C; official ``mec/builder.py``)."""
from __future__ import annotations

from torch import nn


def build_projector(in_dim: int, hidden_dim: int = 2048, out_dim: int = 2048, layers: int = 3) -> nn.Sequential:
    """``layers``-layer MLP: (Linear no-bias, BN, ReLU) x (layers-1), Linear, BN(affine=False).

    With ``layers=3`` and 2048 units this is the paper's ImageNet projector; App. B uses 2 layers
    for CIFAR. The last Linear's bias is frozen at zero, as the official code does, because the
    affine-free BN that follows would cancel it anyway.
    """
    if layers < 1:
        raise ValueError("projector needs at least one layer")
    blocks: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        blocks += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    last = nn.Linear(dim, out_dim)
    nn.init.zeros_(last.bias)
    last.bias.requires_grad = False
    blocks += [last, nn.BatchNorm1d(out_dim, affine=False)]
    return nn.Sequential(*blocks)


def build_predictor(dim: int = 2048, hidden_dim: int = 512) -> nn.Sequential:
    """Two-layer bottleneck predictor of the asymmetric branch: Linear-BN-ReLU-Linear (App. C)."""
    return nn.Sequential(
        nn.Linear(dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, dim),
    )

"""Alignment and uniformity on the hypersphere (Wang & Isola, ICML 2020, Eq. 4-5 and their reference code).

On L2-normalised features: alignment ``E ||f(x) - f(y)||^alpha`` over positive pairs (two views of
one image), alpha = 2; uniformity ``log E_{i != j} exp(-t ||f(x_i) - f(x_j)||^2)``, t = 2. Lower is
"better" for both. The uniformity is streamed over row blocks with a log-sum-exp in float64, so
10,000 samples never hold an ``n x n`` matrix.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from mec_eval.diagnostics.entropy import prepare

BLOCK_ROWS = 1024  # rows per block of the pairwise distances: 1024 x n float64


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0, centred: bool = False) -> float:
    """Mean ``||z1_i - z2_i||^alpha`` of the unit rows of two views (each view centred on its own mean if asked)."""
    if z1.shape != z2.shape:
        raise ValueError(f"the two views must have one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha!r}")
    a, b = prepare(z1, centred), prepare(z2, centred)
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(z: Tensor, t: float = 2.0, centred: bool = False) -> float:
    """``log`` of the mean over pairs ``i != j`` of ``exp(-t ||z_i - z_j||^2)`` on unit rows (needs n >= 2)."""
    if z.shape[0] < 2:
        raise ValueError(f"uniformity needs at least 2 samples, got {z.shape[0]}")
    if not t > 0:
        raise ValueError(f"t must be positive, got {t!r}")
    x = prepare(z, centred)
    n = x.shape[0]
    sq = (x * x).sum(dim=1)
    logs = []
    for start in range(0, n, BLOCK_ROWS):
        rows = slice(start, min(start + BLOCK_ROWS, n))
        dist2 = (sq[rows, None] + sq[None, :] - 2.0 * (x[rows] @ x.T)).clamp_min_(0.0)
        exponent = -t * dist2
        # Drop the diagonal (i == j) of this block: its distance is 0 and it is no pair.
        idx = torch.arange(rows.start, rows.stop, device=x.device)
        exponent[idx - rows.start, idx] = -math.inf
        logs.append(torch.logsumexp(exponent.reshape(-1), dim=0))
    return float(torch.logsumexp(torch.stack(logs), dim=0) - math.log(n * (n - 1)))

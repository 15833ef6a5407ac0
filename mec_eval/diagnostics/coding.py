"""Coding-rate quantities of a feature matrix: MEC's coding length (Eq. 1), M-MAE's total coding rate,
and U-MAE's uniformity term, all exact and in float64 (diagnostics, not training losses).

- Coding length (Liu et al., NeurIPS 2022, Eq. 1): ``(m + d) / 2 * logdet(I_m + d / (m eps^2) Z^T Z)``
  with ``eps^2 = eps_d2 * d``, i.e. ``lam = 1 / (m * eps_d2)``; App. C sets ``eps_d2 = 0.06``.
- Total coding rate (Tan et al., ICML 2024, M-MAE): ``TCR_mu = logdet(I_d + (mu / d) Z^T Z)``; mu = 1 (ViT-B).
  Its second-order expansion is ``mu B / d - (mu^2 B^2 / 2 d^2) * mean_ij cos^2 + O(mu^3)``.
- U-MAE uniformity (Zhang et al., NeurIPS 2022): the mean over all ``B x B`` pairs, diagonal
  included, of ``cos^2 = (z_i . z_j)^2``, which is ``||K||_F^2 / B^2 = exp(-H_2(K))``.

Rows are L2-normalised (after subtracting the feature mean when ``centred``); every log-det is
taken by Cholesky on the smaller Gram matrix (Sylvester: ``det(I_d + c Z^T Z) = det(I_m + c Z Z^T)``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from mec_eval.diagnostics.entropy import prepare, small_gram


def logdet_identity_plus(x: Tensor, scale: float) -> Tensor:
    """``logdet(I + scale * G)`` for unit-row ``x`` with ``G`` its smaller Gram; SPD, so Cholesky (float64)."""
    gram = small_gram(x)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        chol = torch.linalg.cholesky(eye + scale * gram)
    return 2.0 * torch.log(torch.diagonal(chol)).sum()


def coding_length(z: Tensor, eps_d2: float, centred: bool = False) -> Tensor:
    """Coding length of ``z`` (MEC Eq. 1) in nats, a float64 scalar tensor.

    ``(m + d) / 2 * logdet(I + d / (m * eps^2) * Z^T Z)`` with ``eps^2 = eps_d2 * d``; rows of the
    ``[m, d]`` input are L2-normalised, and the log-det is taken on the smaller Gram matrix (Eq. 4).
    """
    if z.ndim != 2:
        raise ValueError(f"z must be [m, d], got {tuple(z.shape)}")
    if not eps_d2 > 0:
        raise ValueError(f"eps_d2 must be positive, got {eps_d2!r}")
    m, d = z.shape
    return (m + d) / 2 * logdet_identity_plus(prepare(z, centred), 1.0 / (m * eps_d2))


def total_coding_rate(z: Tensor, mu: float = 1.0, centred: bool = False) -> float:
    """``TCR_mu(Z) = logdet(I_d + (mu / d) Z^T Z)`` of M-MAE (ICML 2024) on unit rows, in nats."""
    if not mu > 0:
        raise ValueError(f"mu must be positive, got {mu!r}")
    x = prepare(z, centred)
    return float(logdet_identity_plus(x, mu / x.shape[1]))


def umae_uniformity(z: Tensor, centred: bool = False) -> float:
    """U-MAE's term: mean over all ``B x B`` pairs (diagonal included) of ``cos^2``; ``= exp(-H_2)`` for unit rows."""
    x = prepare(z, centred)
    return float(small_gram(x).square().sum() / x.shape[0] ** 2)

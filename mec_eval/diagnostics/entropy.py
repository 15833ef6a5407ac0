"""Matrix Renyi entropies of a feature Gram matrix (Tan et al., ICML 2024, Def. 1) and the effective rank.

For ``Z`` in ``R^{n x d}`` with L2-normalised rows and ``K = Z Z^T`` (``tr K = n``), the spectrum
``p_i = lambda_i(K) / tr K`` is a probability vector and ``H_alpha(K) = 1 / (1 - alpha) * log sum p_i^alpha``;
``alpha -> 1`` is the von Neumann entropy ``H_1 = -sum p_i log p_i``; ``H_2 = 2 log n - log ||K||_F^2``
needs no eigendecomposition. The effective rank is ``exp(H_1)`` (Roy & Vetterli 2007), and
``exp(H_2) <= erank <= rank``. Everything runs in float64 on the smaller of the ``n x n`` and
``d x d`` Gram matrices (same non-zero eigenvalues), negative round-off eigenvalues clipped to 0 and
``0 log 0 = 0`` (``torch.xlogy``). "Centred" variants subtract the feature mean over the ``n`` rows
before the rows are normalised.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def prepare(z: Tensor, centred: bool = False) -> Tensor:
    """``[n, d]`` features as float64 with unit rows (after subtracting the row mean when ``centred``).

    A row that is zero (after centring) stays zero: it adds nothing to ``K``.
    """
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"features must be a non-empty [n, d] matrix, got shape {tuple(z.shape)}")
    z = z.detach().to(torch.float64)
    if not torch.isfinite(z).all():
        raise ValueError("features hold NaN or inf values; the encoder output is not finite")
    if centred:
        z = z - z.mean(dim=0, keepdim=True)
    return F.normalize(z, dim=1)


def small_gram(z: Tensor) -> Tensor:
    """``Z Z^T`` (``n x n``) or ``Z^T Z`` (``d x d``), whichever is smaller (MEC Eq. 4)."""
    n, d = z.shape
    with torch.autocast(device_type=z.device.type, enabled=False):
        return z @ z.T if n <= d else z.T @ z


def kernel_spectrum(k: Tensor) -> Tensor:
    """Normalised eigenvalues ``p`` of a symmetric PSD matrix: float64, negatives clipped, ``sum p = 1``.

    A zero matrix (every feature row zero) has no direction at all; it is given the spectrum ``[1]``
    of a single point (entropy 0, effective rank 1), the limit of a collapse.
    """
    return kernel_spectrum_from_eigenvalues(torch.linalg.eigvalsh(k.to(torch.float64)).clamp_min(0.0))


def kernel_spectrum_from_eigenvalues(eig: Tensor) -> Tensor:
    """``eig / sum eig`` for clipped eigenvalues; ``[1]`` (a single point) when they are all zero."""
    total = eig.sum()
    if total <= 0:
        return torch.ones(1, dtype=torch.float64, device=eig.device)
    return eig / total


def spectrum(z: Tensor, centred: bool = False) -> Tensor:
    """Normalised Gram spectrum ``p`` of the features ``z`` (see :func:`kernel_spectrum`)."""
    return kernel_spectrum(small_gram(prepare(z, centred)))


def renyi_from_spectrum(p: Tensor, alpha: float = 1.0) -> float:
    """``H_alpha`` of a probability vector ``p`` (natural log); ``alpha`` > 0, 1 is von Neumann / Shannon."""
    if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if alpha == 1:
        return float(-torch.xlogy(p, p).sum())
    # log sum p^alpha through logsumexp: p^alpha underflows for large alpha, its log does not.
    positive = p[p > 0]
    return float(torch.logsumexp(alpha * positive.log(), dim=0) / (1.0 - alpha))


def kernel_entropy(k: Tensor, alpha: float = 1.0) -> float:
    """``H_alpha(K)`` of a symmetric PSD matrix (normalised by its trace)."""
    return renyi_from_spectrum(kernel_spectrum(k), alpha)


def matrix_entropy(z: Tensor, alpha: float = 1.0, centred: bool = False) -> float:
    """Matrix Renyi-``alpha`` entropy ``H_alpha(Z Z^T)`` of features ``z`` in nats (ICML 2024 Def. 1)."""
    if alpha == 2:
        return entropy_h2(z, centred)
    return renyi_from_spectrum(spectrum(z, centred), alpha)


def entropy_h2(z: Tensor, centred: bool = False) -> float:
    """``H_2 = -log(||K||_F^2 / (tr K)^2)`` (``= 2 log n - log ||K||_F^2`` for unit rows), no eigendecomposition.

    ``||Z Z^T||_F = ||Z^T Z||_F``, so the smaller Gram gives it too.
    """
    x = prepare(z, centred)
    trace = (x * x).sum()
    if trace <= 0:
        return 0.0  # every row zero: the single-point convention of kernel_spectrum
    frob2 = small_gram(x).square().sum()
    return float(2.0 * trace.log() - frob2.log())


def effective_rank(z: Tensor, centred: bool = False) -> float:
    """``exp(H_1)``: between 1 (every row on one line) and ``rank(Z) <= min(n, d)``."""
    return math.exp(matrix_entropy(z, 1.0, centred))


def normalised(entropy: float, d: int) -> float:
    """``H / log d`` with ``d`` the feature dimension (the issue's choice, not ``log min(n, d)``).

    ``H <= log rank <= log min(n, d)``, so with fewer samples than dimensions 1 cannot be reached.
    """
    if d < 2:
        raise ValueError(f"normalising by log d needs d >= 2 feature dimensions, got d={d}")
    return entropy / math.log(d)

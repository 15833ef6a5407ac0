"""Representation diagnostics of a feature matrix (matrix information, coding rates, hypersphere geometry).

Sources: Liu et al., NeurIPS 2022 (MEC coding length, Eq. 1); Tan et al., ICML 2024 (matrix
entropy, mutual information, total coding rate); Zhang et al., NeurIPS 2022 (U-MAE uniformity);
Wang & Isola, ICML 2020 (alignment, uniformity). ``../shared/protocols/matrix-information.md``
collects the definitions. Every quantity is in nats, computed in float64.

Example:
    >>> z1, z2 = torch.randn(512, 256), torch.randn(512, 256)
    >>> compute_diagnostics(z1)["effective_rank"]                  # single view
    >>> compute_diagnostics(z1, z2, centred=True)["mutual_information"]
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from mec_eval.diagnostics.coding import (
    coding_length,
    total_coding_rate,
    umae_uniformity,
)
from mec_eval.diagnostics.entropy import (
    effective_rank,
    entropy_h2,
    kernel_spectrum_from_eigenvalues,
    matrix_entropy,
    normalised,
    prepare,
    renyi_from_spectrum,
    small_gram,
    spectrum,
)
from mec_eval.diagnostics.geometry import alignment, uniformity
from mec_eval.diagnostics.mutual import joint_entropy, mutual_information

EPS_D2 = 0.06   # MEC App. C distortion eps_d^2
MU = 1.0        # M-MAE total coding rate mu for ViT-B (ICML 2024)

SINGLE_VIEW = ("coding_length", "effective_rank", "entropy_h1", "entropy_h2", "entropy_h1_norm", "entropy_h2_norm",
               "total_coding_rate", "umae_uniformity", "uniformity")
TWO_VIEW = ("alignment", "mutual_information", "joint_entropy")


def single_view_diagnostics(z: Tensor, eps_d2: float = EPS_D2, mu: float = MU, centred: bool = False) -> dict:
    """The :data:`SINGLE_VIEW` quantities of features ``z`` ``[n, d]`` (H normalised by ``log d``).

    One Gram matrix and one eigendecomposition serve every spectral quantity: with ``lam`` the
    eigenvalues of the smaller Gram of the unit rows, ``H_1`` is the entropy of ``lam / sum lam``,
    ``logdet(I + c G) = sum log(1 + c lam)`` gives the coding length and the TCR, and ``||G||_F^2``
    gives ``H_2`` and the U-MAE term (each equals its stand-alone function; the tests check it).
    """
    if not eps_d2 > 0 or not mu > 0:
        raise ValueError(f"eps_d2 and mu must be positive, got {eps_d2!r} and {mu!r}")
    x = prepare(z, centred)
    n, d = x.shape
    gram = small_gram(x)
    lam = torch.linalg.eigvalsh(gram).clamp_min(0.0)
    h1 = renyi_from_spectrum(kernel_spectrum_from_eigenvalues(lam), 1.0)
    trace, frob2 = (x * x).sum(), gram.square().sum()
    h2 = float(2.0 * trace.log() - frob2.log()) if trace > 0 else 0.0
    return {"coding_length": float((n + d) / 2 * torch.log1p(lam / (n * eps_d2)).sum()),
            "effective_rank": math.exp(h1), "entropy_h1": h1, "entropy_h2": h2,
            "entropy_h1_norm": normalised(h1, d), "entropy_h2_norm": normalised(h2, d),
            "total_coding_rate": float(torch.log1p(lam * (mu / d)).sum()), "umae_uniformity": float(frob2 / n ** 2),
            "uniformity": uniformity(z, 2.0, centred)}


def two_view_diagnostics(z1: Tensor, z2: Tensor, alpha: float = 1.0, centred: bool = False) -> dict:
    """The :data:`TWO_VIEW` quantities of two views ``[n, d]`` of the same images (MI / joint entropy at ``alpha``)."""
    return {"alignment": alignment(z1, z2, 2.0, centred),
            "mutual_information": mutual_information(z1, z2, alpha, centred),
            "joint_entropy": joint_entropy(z1, z2, alpha, centred)}


def compute_diagnostics(z1: Tensor, z2: Tensor | None = None, eps_d2: float = EPS_D2, mu: float = MU,
                        centred: bool = False, alpha: float = 1.0) -> dict:
    """Single-view quantities of ``z1``, plus the two-view ones when a second view ``z2`` is given."""
    out = single_view_diagnostics(z1, eps_d2, mu, centred)
    if z2 is not None:
        out.update(two_view_diagnostics(z1, z2, alpha, centred))
    return out


__all__ = ["EPS_D2", "MU", "SINGLE_VIEW", "TWO_VIEW", "alignment", "coding_length", "compute_diagnostics",
           "effective_rank", "entropy_h2", "joint_entropy", "matrix_entropy", "mutual_information", "normalised",
           "single_view_diagnostics", "spectrum", "total_coding_rate", "two_view_diagnostics", "umae_uniformity",
           "uniformity"]

"""Two-view matrix mutual information and joint entropy (Tan et al., ICML 2024, after Sanchez Giraldo et al. 2014).

For the unit-diagonal Grams ``K1 = Z1 Z1^T`` and ``K2 = Z2 Z2^T`` of two views of the same ``n``
images, the joint entropy is ``H(K1 o K2)`` (Hadamard product, PSD with unit diagonal) and the
mutual information ``I = H(K1) + H(K2) - H(K1 o K2)``, with ``0 <= I <= min(H(K1), H(K2))``.
The Hadamard product has no smaller Gram, so ``H_1`` of it costs an ``n x n`` eigendecomposition
(float64); ``H_2`` only its Frobenius norm.
"""
from __future__ import annotations

from torch import Tensor

from mec_eval.diagnostics.entropy import kernel_entropy, matrix_entropy, prepare


def _hadamard_gram(z1: Tensor, z2: Tensor, centred: bool) -> Tensor:
    if z1.shape[0] != z2.shape[0]:
        raise ValueError(f"the two views must have the same number of rows, got {z1.shape[0]} and {z2.shape[0]}")
    a, b = prepare(z1, centred), prepare(z2, centred)
    return (a @ a.T).mul_(b @ b.T)


def joint_entropy(z1: Tensor, z2: Tensor, alpha: float = 1.0, centred: bool = False) -> float:
    """``H_alpha(K1 o K2)`` in nats."""
    gram = _hadamard_gram(z1, z2, centred)
    if alpha == 2:
        trace = gram.diagonal().sum()
        return 0.0 if trace <= 0 else float(2.0 * trace.log() - gram.square().sum().log())
    return kernel_entropy(gram, alpha)


def mutual_information(z1: Tensor, z2: Tensor, alpha: float = 1.0, centred: bool = False) -> float:
    """``I_alpha(K1; K2) = H_alpha(K1) + H_alpha(K2) - H_alpha(K1 o K2)`` in nats."""
    return (matrix_entropy(z1, alpha, centred) + matrix_entropy(z2, alpha, centred)
            - joint_entropy(z1, z2, alpha, centred))

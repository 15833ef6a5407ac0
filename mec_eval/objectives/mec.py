"""Maximum Entropy Coding (Liu et al., "Self-Supervised Learning via Maximum Entropy Coding", NeurIPS 2022).

The coding length of ``m`` samples in ``d`` dimensions at distortion ``eps`` (paper Eq. 1) is
``mu * logdet(I + lam * Z^T Z)`` with ``mu = (m + d) / 2`` and ``lam = d / (m * eps^2) = 1 / (m * eps_d2)``.
MEC maximises it across two views, ``L = -mu * logdet(I + lam * Z1^T Z2)`` (Eq. 3), through its Taylor
expansion ``-mu * Tr(sum_k (-1)^(k+1) / k * C^k)``, ``C = lam * Z1^T Z2``. The ``m x m`` (batch-wise)
and ``d x d`` (feature-wise) matrices have the same non-zero eigenvalues, hence the same value (Eq. 4).

Example:
    >>> z1, z2 = torch.randn(256, 2048), torch.randn(256, 2048)
    >>> loss = mec_loss(z1, z2, eps_d2=0.06, order=4)              # paper Eq. 3
    >>> exact = mec_loss(z1, z2, eps_d2=0.06, exact=True)          # -mu * logdet, same to ~1e-3
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mec_eval.diagnostics.coding import coding_length  # noqa: F401 - moved there; re-exported
from mec_eval.dist import gather_with_grad
from mec_eval.objectives.base import Objective, check_two_views, full_precision, upcast
from mec_eval.utils import UserError

SIDES = ("auto", "batch", "feature")
# Official code: lam_inv starts at 8 / lam and falls linearly to 1 / lam during the warm-up.
WARMUP_START_FACTOR = 8.0


def resolve_side(side: str, m: int, d: int) -> str:
    """``"batch"`` (``m x m``) or ``"feature"`` (``d x d``); ``"auto"`` takes the smaller matrix."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    if side == "auto":
        return "batch" if m <= d else "feature"
    return side


def _correlation(z1: Tensor, z2: Tensor, lam: float, side: str) -> Tensor:
    """``C = lam * Z1 Z2^T`` (``m x m``) or ``lam * Z1^T Z2`` (``d x d``) for row-major ``[m, d]`` inputs."""
    return (z1 @ z2.T if side == "batch" else z1.T @ z2).mul_(lam)


class _TaylorTrace(torch.autograd.Function):
    """``Tr(sum_{k=1..n} (-1)^(k+1) / k * C^k)`` with a closed-form backward.

    Forward: ``Tr(C) = lam * <p, z>`` needs no product and ``Tr(C^(a+b)) = sum(C^a * (C^b)^T)``, so
    only ``C .. C^ceil(n/2)`` are formed. Backward: ``dT/dC = F^T`` with ``F = sum_{j<n} (-C)^j``, so
    ``dT/dp, dT/dz`` are two products with ``F`` (plus the powers up to ``n - 1``): order 4 costs
    5 matrix products in all, where autograd through App. A's loop costs 12.
    """

    @staticmethod
    def forward(ctx, p: Tensor, z: Tensor, lam: float, order: int, side: str) -> Tensor:
        ctx.lam, ctx.order, ctx.side = lam, order, side
        total = lam * torch.dot(p.reshape(-1), z.reshape(-1))
        powers = []
        if order > 1:
            powers.append(_correlation(p, z, lam, side))
            while len(powers) < (order + 1) // 2:
                powers.append(powers[-1] @ powers[0])
        for k in range(2, order + 1):
            # One contraction; on CPU ~4x faster than (A * B.T).sum() with its m x m product temporary.
            trace_k = torch.einsum("ij,ji->", powers[(k + 1) // 2 - 1], powers[k // 2 - 1])
            total = total + trace_k / k if k % 2 else total - trace_k / k
        ctx.save_for_backward(p, z, *powers)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        p, z, *powers = ctx.saved_tensors
        with full_precision(grad):
            scale = grad * ctx.lam
            if ctx.order == 1:
                return scale * z, scale * p, None, None, None
            while len(powers) < ctx.order - 1:
                powers.append(powers[-1] @ powers[0])
            f = powers[0].neg()  # F = I - C + C^2 - ... (order terms), then scaled by grad * lam
            for j, power in enumerate(powers[1:], start=2):
                f.add_(power, alpha=1.0 if j % 2 == 0 else -1.0)
            f.diagonal().add_(1.0)
            f.mul_(scale)
            if ctx.side == "batch":  # C = lam p z^T: dT/dp = lam F^T z, dT/dz = lam F p
                return f.T @ z, f @ p, None, None, None
            return z @ f, p @ f.T, None, None, None  # C = lam p^T z: dT/dp = lam z F, dT/dz = lam p F^T


def taylor_trace(p: Tensor, z: Tensor, lam: float, order: int, side: str) -> Tensor:
    """``Tr(sum_{k=1..order} (-1)^(k+1) / k * C^k)`` for row-normalised ``p, z`` (Eq. 3 without ``-mu``).

    Same value as the power loop of App. A with fewer matrix products (see :class:`_TaylorTrace`).
    ``side`` is ``"batch"``, ``"feature"`` or ``"auto"`` as in :func:`mec_loss`.
    """
    return _TaylorTrace.apply(p, z, lam, order, resolve_side(side, *p.shape))


def _logdet_identity_plus(c: Tensor) -> Tensor:
    """``logdet(I + C)``; a non-positive determinant means the objective is undefined."""
    sign, logabsdet = torch.linalg.slogdet(torch.eye(c.shape[0], dtype=c.dtype, device=c.device) + c)
    if sign.item() <= 0:
        raise FloatingPointError(
            "det(I + lam * Z1 Z2^T) is not positive, so the log-det (and its Taylor expansion) is "
            "undefined; increase loss.eps_d2 to shrink lam"
        )
    return logabsdet


def _validate(z1: Tensor, z2: Tensor, eps_d2: float, order: int, side: str) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must be [m, d] of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not (isinstance(order, int) and order >= 1):
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    if not eps_d2 > 0:
        raise ValueError(f"eps_d2 must be positive, got {eps_d2!r}")
    resolve_side(side, *z1.shape)


def mec_loss(
    z1: Tensor, z2: Tensor, eps_d2: float = 0.06, order: int = 4, side: str = "auto", exact: bool = False
) -> Tensor:
    """MEC loss of two views (paper Eq. 3), a scalar.

    Args:
        z1, z2: ``[m, d]`` embeddings of the two views; rows are L2-normalised here.
        eps_d2: distortion ``eps_d^2``; ``lam = 1 / (m * eps_d2)``, ``mu = (m + d) / 2``.
        order: Taylor order ``n`` (ignored when ``exact``).
        side: ``"batch"`` (``m x m``), ``"feature"`` (``d x d``) or ``"auto"`` (the smaller; Eq. 4).
        exact: ``-mu * logdet(I + lam * Z1 Z2^T)`` instead of the expansion; raises
            ``FloatingPointError`` when the determinant is not positive.

    Computed in at least float32 with autocast off: a bf16 trace of an ``m x m`` matrix loses the
    digits the higher-order terms live in.
    """
    _validate(z1, z2, eps_d2, order, side)
    m, d = z1.shape
    lam, mu = 1.0 / (m * eps_d2), (m + d) / 2
    with full_precision(z1):
        z1, z2 = F.normalize(upcast(z1), dim=1), F.normalize(upcast(z2), dim=1)
        resolved = resolve_side(side, m, d)
        if exact:
            value = _logdet_identity_plus(_correlation(z1, z2, lam, resolved))
        else:
            value = taylor_trace(z1, z2, lam, order, resolved)
    return -mu * value


class MECLoss(Objective):
    """MEC training objective as in the official code (``main_pretrain.py``), order-4 Taylor by default.

    Symmetric over the views: student predictor outputs ``p`` against teacher projections ``z``,
    ``loss = -(T(p1, z2) + T(p2, z1)) / (2 * m * lam)`` with ``T`` the Taylor trace at the current
    ``lam``; dividing by ``lam`` makes order 1 the negative mean cosine (SimSiam/BYOL, Eq. 23).
    ``lam_inv = 1 / lam`` warms up linearly per iteration from ``8 / lam`` to ``1 / lam`` over
    ``warmup_epochs`` so the expansion converges while the embeddings are still collapsed. ``m`` is
    the global batch (embeddings are all-gathered). ``stats`` logs the official per-sample coding
    length ``mec = mu * (T12 + T21) / (2 * m)`` and the current ``lam``. Two small differences from
    the official code: ``m`` is the batch actually gathered (not the configured one), and the
    warm-up reaches ``1 / lam`` at exactly ``warmup_epochs`` (``np.linspace`` there ends one step early).

    Example:
        >>> objective = MECLoss(eps_d2=0.06, order=4, warmup_epochs=10)
        >>> objective.on_step(epoch=2.5)
        >>> loss = objective([p1, p2], [z1, z2])
    """

    default_predictor = True
    default_teacher = True

    def __init__(self, eps_d2: float = 0.06, order: int = 4, side: str = "auto", warmup_epochs: float = 10.0):
        super().__init__()
        if not eps_d2 > 0:
            raise UserError(f"loss.eps_d2 must be positive, got {eps_d2}")
        if not (isinstance(order, int) and order >= 1):
            raise UserError(f"loss.order must be an integer >= 1, got {order}")
        if side not in SIDES:
            raise UserError(f"loss.side must be one of {', '.join(SIDES)}, got {side!r}")
        if not warmup_epochs >= 0:
            raise UserError(f"loss.lam_warmup_epochs must be >= 0, got {warmup_epochs}")
        self.eps_d2, self.order, self.side, self.warmup_epochs = eps_d2, order, side, warmup_epochs
        self.epoch = 0.0

    @classmethod
    def from_config(cls, cfg) -> "MECLoss":
        return cls(eps_d2=cfg.eps_d2, order=cfg.order, side=cfg.side, warmup_epochs=cfg.lam_warmup_epochs)

    def on_step(self, epoch: float) -> None:
        self.epoch = float(epoch)

    def lam_inv_factor(self) -> float:
        """``lam_inv * lam``: 8 at epoch 0, linear down to 1 at ``warmup_epochs``, then 1."""
        if self.warmup_epochs == 0:
            return 1.0
        progress = min(max(self.epoch / self.warmup_epochs, 0.0), 1.0)
        return WARMUP_START_FACTOR + (1.0 - WARMUP_START_FACTOR) * progress

    def forward(self, online: Sequence[Tensor], target: Sequence[Tensor]) -> Tensor:
        check_two_views(online, target)
        with full_precision(online[0]):
            p = [F.normalize(upcast(gather_with_grad(x)), dim=1) for x in online]
            z = [F.normalize(upcast(gather_with_grad(x)), dim=1) for x in target]
            m, d = p[0].shape
            lam = 1.0 / (m * self.eps_d2 * self.lam_inv_factor())
            side = resolve_side(self.side, m, d)
            pair_mean = (taylor_trace(p[0], z[1], lam, self.order, side)
                         + taylor_trace(p[1], z[0], lam, self.order, side)) * 0.5 / m
        self.stats = {"mec": pair_mean.item() * (m + d) / 2, "lam": lam}
        return -pair_mean / lam

"""Masked-autoencoder objectives: MAE, U-MAE and M-MAE, one small class each (single-branch, ViT).

- MAE (He et al., CVPR 2022, ``models_mae.py forward_loss``): mean squared error between predicted
  and true pixels of the *masked* patches only; with ``norm_pix_loss`` each target patch is
  standardised by its own mean and variance (``(x - mean) / sqrt(var + 1e-6)``, unbiased var).
- U-MAE (Zhang et al., NeurIPS 2022, github zhangq327/U-MAE ``loss_func.py``): MAE +
  ``weight * mean_ij (z_i . z_j)^2`` over all ``B x B`` pairs, diagonal included, ``z`` the
  L2-normalised CLS tokens gathered over processes; the official ``lambda 1e-4`` on ``(cos / tau)^2``
  with ``tau = 0.1`` is ``weight = 0.01`` on ``cos^2``.
- M-MAE (Tan et al., ICML 2024, github yifanzhang-pro/M-MAE ``uniformity_loss_TCR``): MAE -
  ``lam * TCR_mu(Z)``, ``TCR_mu(Z) = logdet(I_d + (mu / d) Z^T Z)``, ``Z`` as for U-MAE; ``lam = 0.01``,
  ``mu = 1`` (ViT-B) / 3 (ViT-L). Its second-order expansion is ``mu B / d - (mu B / d)^2 / 2 *
  mean_ij cos^2``: U-MAE is the truncated M-MAE (the paper's Sec. 5).

Each ``forward(out)`` takes a :class:`mec_eval.models.mae.MAEOutput` and returns a dict of the
weighted terms (the training engine sums and logs them); the regulariser runs in fp32 outside autocast.

Example::

    loss = MMAELoss(lam=0.01, mu=1.0)(mae(images))   # {"mae": ..., "tcr": -0.01 * TCR}
    sum(loss.values()).backward()
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mec_eval.diagnostics.coding import logdet_identity_plus
from mec_eval.dist import gather_with_grad
from mec_eval.objectives.base import full_precision, upcast

NORM_PIX_EPS = 1e-6  # models_mae.py forward_loss


def masked_patch_loss(pred: Tensor, target: Tensor, mask: Tensor, norm_pix: bool = True) -> Tensor:
    """Mean over masked patches (``mask == 1``) of the per-patch mean squared error (MAE ``forward_loss``)."""
    pred, target, mask = upcast(pred), upcast(target), upcast(mask)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + NORM_PIX_EPS).sqrt()
    per_patch = (pred - target).square().mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


def gathered_unit_rows(z: Tensor) -> Tensor:
    """The CLS features of every process (gradients for the local slice), fp32, rows L2-normalised."""
    return F.normalize(upcast(gather_with_grad(z)), dim=1)


def pairwise_cos2(z: Tensor) -> Tensor:
    """``mean_ij (z_i . z_j)^2`` over all ``B x B`` pairs of unit rows, diagonal included (U-MAE)."""
    with full_precision(z):
        return (z @ z.T).square().mean()


def tcr(z: Tensor, mu: float) -> Tensor:
    """``TCR_mu(Z) = logdet(I_d + (mu / d) Z^T Z)`` of unit rows, differentiable (taken on the smaller Gram)."""
    with full_precision(z):
        return logdet_identity_plus(z, mu / z.shape[1])


class MAELoss(nn.Module):
    """MAE reconstruction loss on the masked patches (``norm_pix_loss`` as the papers' 200-epoch runs)."""

    def __init__(self, norm_pix_loss: bool = True):
        super().__init__()
        self.norm_pix_loss = norm_pix_loss

    def reconstruction(self, out) -> Tensor:
        return masked_patch_loss(out.pred, out.target, out.mask, self.norm_pix_loss)

    def forward(self, out) -> dict[str, Tensor]:
        return {"mae": self.reconstruction(out)}


class UMAELoss(MAELoss):
    """MAE + ``weight`` x mean over all pairs of cos^2 of the gathered CLS tokens (U-MAE, NeurIPS 2022)."""

    def __init__(self, norm_pix_loss: bool = True, weight: float = 0.01):
        super().__init__(norm_pix_loss)
        self.weight = weight

    def forward(self, out) -> dict[str, Tensor]:
        return {"mae": self.reconstruction(out),
                "uniformity": self.weight * pairwise_cos2(gathered_unit_rows(out.cls))}


class MMAELoss(MAELoss):
    """MAE - ``lam`` x TCR_mu of the gathered, L2-normalised CLS tokens (M-MAE, ICML 2024)."""

    def __init__(self, norm_pix_loss: bool = True, lam: float = 0.01, mu: float = 1.0):
        super().__init__(norm_pix_loss)
        self.lam, self.mu = lam, mu

    def forward(self, out) -> dict[str, Tensor]:
        return {"mae": self.reconstruction(out), "tcr": -self.lam * tcr(gathered_unit_rows(out.cls), self.mu)}


def build_mae_objective(name: str, mae_cfg) -> MAELoss:
    """``mae`` / ``umae`` / ``mmae`` from the ``mae`` config section (:class:`mec_eval.config.MAEConfig`)."""
    if name == "mae":
        return MAELoss(mae_cfg.norm_pix_loss)
    if name == "umae":
        return UMAELoss(mae_cfg.norm_pix_loss, mae_cfg.umae_weight)
    if name == "mmae":
        return MMAELoss(mae_cfg.norm_pix_loss, mae_cfg.mmae_lambda, mae_cfg.mmae_mu)
    raise ValueError(f"not a masked-autoencoder loss: {name!r} (mae, umae, mmae)")

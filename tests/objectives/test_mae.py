"""MAE / U-MAE / M-MAE losses (objectives/mae.py) against hand computations and independent formulations."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mec_eval.config import MAEConfig
from mec_eval.models.mae import MAEOutput
from mec_eval.objectives.mae import (
    MAELoss,
    MMAELoss,
    UMAELoss,
    build_mae_objective,
    masked_patch_loss,
    pairwise_cos2,
    tcr,
)


def test_norm_pix_loss_by_hand():
    """One image, two patches of three values; only patch 1 is masked."""
    target = torch.tensor([[[1.0, 2.0, 3.0], [2.0, 4.0, 9.0]]])
    pred = torch.tensor([[[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]]])
    mask = torch.tensor([[0.0, 1.0]])
    mean = 5.0
    var = ((2 - 5) ** 2 + (4 - 5) ** 2 + (9 - 5) ** 2) / 2  # unbiased, as torch.var in models_mae.py
    normed = [(v - mean) / math.sqrt(var + 1e-6) for v in (2.0, 4.0, 9.0)]
    expected = sum((p - t) ** 2 for p, t in zip([1.0, -1.0, 0.5], normed)) / 3
    assert masked_patch_loss(pred, target, mask, norm_pix=True).item() == pytest.approx(expected, rel=1e-6)
    plain = sum((p - t) ** 2 for p, t in zip([1.0, -1.0, 0.5], [2.0, 4.0, 9.0])) / 3
    assert masked_patch_loss(pred, target, mask, norm_pix=False).item() == pytest.approx(plain, rel=1e-6)


def test_visible_patches_do_not_count():
    torch.manual_seed(0)
    pred, target = torch.randn(4, 16, 12), torch.randn(4, 16, 12)
    mask = (torch.rand(4, 16) < 0.75).float()
    changed = pred.clone()
    changed[mask == 0] += 10.0
    assert masked_patch_loss(changed, target, mask).item() == pytest.approx(masked_patch_loss(pred, target, mask).item())
    # The mean is over masked patches, not all: a loss of 1 on each masked patch averages to 1.
    per_patch = torch.ones(4, 16, 12)
    assert masked_patch_loss(per_patch + target, target, mask, norm_pix=False).item() == pytest.approx(1.0)


def _unit(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


@pytest.mark.parametrize("n,d", [(6, 10), (12, 5)])
def test_tcr_equals_slogdet_on_the_other_gram(n, d):
    """logdet(I_d + mu/d Z^T Z) = logdet(I_n + mu/d Z Z^T) (Sylvester), whichever side the code takes."""
    z, mu = _unit(n, d), 3.0
    d_side = torch.linalg.slogdet(torch.eye(d, dtype=z.dtype) + mu / d * z.T @ z)[1]
    n_side = torch.linalg.slogdet(torch.eye(n, dtype=z.dtype) + mu / d * z @ z.T)[1]
    torch.testing.assert_close(tcr(z, mu), d_side)
    torch.testing.assert_close(tcr(z, mu), n_side)


def test_tcr_agrees_with_the_diagnostic():
    diagnostics = pytest.importorskip("mec_eval.diagnostics.coding")
    z = torch.randn(20, 8, generator=torch.Generator().manual_seed(1))
    assert tcr(F.normalize(z.double(), dim=1), 1.0).item() == pytest.approx(diagnostics.total_coding_rate(z, 1.0))


def test_tcr_closed_forms():
    """Collapse: all rows equal -> log(1 + mu n / d). Orthonormal n = d rows -> d log(1 + mu / d)."""
    d = 8
    collapsed = F.normalize(torch.ones(5, d, dtype=torch.float64), dim=1)
    assert tcr(collapsed, 2.0).item() == pytest.approx(math.log(1 + 2.0 * 5 / d))
    assert tcr(torch.eye(d, dtype=torch.float64), 2.0).item() == pytest.approx(d * math.log(1 + 2.0 / d))


def test_umae_term_is_exp_minus_h2():
    """mean_ij cos^2 = ||K||_F^2 / n^2 = sum p_i^2 = exp(-H_2), p the eigenvalues of K / tr K."""
    z = _unit(9, 4, seed=3)
    p = torch.linalg.eigvalsh(z @ z.T) / 9
    h2 = -torch.log((p.clamp_min(0) ** 2).sum())
    assert pairwise_cos2(z).item() == pytest.approx(math.exp(-h2.item()), rel=1e-9)
    assert pairwise_cos2(F.normalize(torch.ones(4, 3, dtype=torch.float64), dim=1)).item() == pytest.approx(1.0)


def test_umae_is_the_second_order_mmae():
    """TCR_mu = mu n/d - (mu n/d)^2 / 2 * mean cos^2 + O(mu^3): the error shrinks as mu^3."""
    z = _unit(16, 32, seed=4)
    n, d = z.shape
    errors = []
    for mu in (0.1, 0.05):
        second = mu * n / d - (mu * n / d) ** 2 / 2 * pairwise_cos2(z).item()
        errors.append(abs(tcr(z, mu).item() - second))
    assert errors[0] / errors[1] == pytest.approx(8.0, rel=0.1)


def _output(seed: int = 0, b: int = 6, dim: int = 5) -> MAEOutput:
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(b, dim, generator=g, requires_grad=True)
    mask = torch.zeros(b, 4)
    mask[:, 1:] = 1.0  # 3 of 4 patches masked
    return MAEOutput(torch.randn(b, 4, 12, generator=g, requires_grad=True), torch.randn(b, 4, 12, generator=g),
                     mask, cls)


def test_regularised_losses_add_their_terms_and_reach_the_cls():
    out = _output()
    mae = MAELoss()(out)["mae"]
    unit = F.normalize(out.cls.detach(), dim=1)
    umae = UMAELoss(weight=0.01)(out)
    assert umae["mae"].item() == pytest.approx(mae.item())
    assert umae["uniformity"].item() == pytest.approx(0.01 * ((unit @ unit.T) ** 2).mean().item(), rel=1e-5)
    mmae = MMAELoss(lam=0.01, mu=3.0)(out)
    d = unit.shape[1]
    expected = -0.01 * torch.logdet(torch.eye(d) + 3.0 / d * unit.T @ unit).item()
    assert mmae["tcr"].item() == pytest.approx(expected, rel=1e-5)
    for terms in (umae, mmae):
        out.cls.grad = None
        sum(terms.values()).backward()
        assert out.cls.grad is not None and out.cls.grad.abs().sum() > 0


def test_regulariser_ignores_feature_scale():
    out = _output()
    scaled = MAEOutput(out.pred, out.target, out.mask, out.cls * 7.0)
    for loss in (UMAELoss(), MMAELoss()):
        first, second = loss(out), loss(scaled)
        assert sum(first.values()).item() == pytest.approx(sum(second.values()).item(), rel=1e-5)


def test_build_from_config():
    cfg = MAEConfig(norm_pix_loss=False, umae_weight=0.5, mmae_lambda=0.2, mmae_mu=3.0)
    assert type(build_mae_objective("mae", cfg)) is MAELoss
    assert build_mae_objective("umae", cfg).weight == 0.5
    mmae = build_mae_objective("mmae", cfg)
    assert (mmae.lam, mmae.mu, mmae.norm_pix_loss) == (0.2, 3.0, False)
    with pytest.raises(ValueError, match="not a masked-autoencoder loss"):
        build_mae_objective("mec", SimpleNamespace())

"""Baseline objectives against independent, loop-level formulations of their papers' equations."""
from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mec_eval.objectives import (
    OBJECTIVES, BarlowTwinsLoss, BYOLLoss, SimCLRLoss, SimSiamLoss, VICRegLoss, build_objective,
)
from mec_eval.utils import UserError


def loss_config(**overrides) -> types.SimpleNamespace:
    fields = dict(name="mec", eps_d2=0.06, order=4, side="auto", lam_warmup_epochs=10.0, temperature=0.1,
                  barlow_lambda=0.0051, vicreg_sim=25.0, vicreg_var=25.0, vicreg_cov=1.0)
    fields.update(overrides)
    return types.SimpleNamespace(**fields)


def views(m: int = 8, d: int = 5, n: int = 2, seed: int = 0, grad: bool = False) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(m, d, dtype=torch.float64, generator=generator).requires_grad_(grad) for _ in range(n)]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def test_simsiam_matches_per_sample_cosines():
    p1, p2, z1, z2 = views(n=4)
    mean_12 = sum(cosine(p1[i], z2[i]) for i in range(8)) / 8
    mean_21 = sum(cosine(p2[i], z1[i]) for i in range(8)) / 8
    expected = -0.5 * (mean_12 + mean_21)
    assert SimSiamLoss()([p1, p2], [z1, z2]).item() == pytest.approx(expected, rel=1e-12)
    assert SimSiamLoss()([z2, z1], [z1, z2]).item() == pytest.approx(-1.0, rel=1e-12)  # aligned pairs


def test_byol_is_normalised_mse_and_equals_two_minus_two_cosine():
    q1, q2, t1, t2 = views(n=4, seed=1)
    mse = sum(((q1[i] / q1[i].norm() - t2[i] / t2[i].norm()) ** 2).sum() for i in range(8)) / 8
    mse = mse + sum(((q2[i] / q2[i].norm() - t1[i] / t1[i].norm()) ** 2).sum() for i in range(8)) / 8
    loss = BYOLLoss()([q1, q2], [t1, t2])
    assert loss.item() == pytest.approx(mse.item(), rel=1e-12)
    # ||a/|a| - b/|b|||^2 = 2 - 2 cos: BYOL is 4 + 4 * SimSiam on the same pairs (MEC paper, App. E).
    assert loss.item() == pytest.approx(4 + 4 * SimSiamLoss()([q1, q2], [t1, t2]).item(), rel=1e-12)


@pytest.mark.parametrize("objective", [SimSiamLoss(), BYOLLoss()])
def test_pairwise_gradients_reach_only_the_online_branch(objective):
    p1, p2, z1, z2 = views(n=4, seed=2, grad=True)
    objective([p1, p2], [z1, z2]).backward()
    assert p1.grad is not None and p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0
    assert z1.grad is None and z2.grad is None


def barlow_by_loops(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> float:
    m, d = z1.shape
    norm = nn.BatchNorm1d(d, affine=False, dtype=z1.dtype).train()  # the authors' normalisation layer
    a, b = norm(z1).tolist(), norm(z2).tolist()
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k][i] * b[k][j] for k in range(m)) / m
            loss += (1 - c_ij) ** 2 if i == j else lambd * c_ij ** 2
    return loss


def test_barlow_twins_matches_explicit_loops():
    z1, z2 = views(m=7, d=4, seed=3)
    loss = BarlowTwinsLoss(lambd=0.3)([z1, z2], [z1, z2])
    assert loss.item() == pytest.approx(barlow_by_loops(z1, z2, 0.3), rel=1e-10)


def test_barlow_twins_identical_decorrelated_views_cost_nothing():
    # Non-constant Hadamard columns: zero-mean, unit-variance, uncorrelated, so C = I up to BN's eps.
    hadamard = torch.ones(1, 1, dtype=torch.float64)
    for _ in range(3):
        hadamard = torch.kron(hadamard, torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64))
    z = hadamard[:, 1:]
    loss = BarlowTwinsLoss()([z, z], [z, z])
    assert loss.item() < 1e-8
    assert BarlowTwinsLoss()([z, torch.randn_like(z)], [z, z]).item() > 1.0


def nt_xent_by_anchor(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n, m = z.shape[0], z1.shape[0]
    losses = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        logits = torch.stack([z[i] @ z[j] for j in others]) / temperature
        positive = others.index((i + m) % n)
        losses.append(F.cross_entropy(logits[None], torch.tensor([positive])))
    return float(torch.stack(losses).mean())


def test_simclr_matches_per_anchor_cross_entropy():
    z1, z2 = views(m=6, d=5, seed=4)
    loss = SimCLRLoss(temperature=0.2)([z1, z2], [z1, z2])
    assert loss.item() == pytest.approx(nt_xent_by_anchor(z1, z2, 0.2), rel=1e-10)


def test_simclr_known_value_for_identical_orthogonal_views():
    m, temperature = 4, 0.5
    z = torch.eye(m, dtype=torch.float64)  # each positive has cosine 1, each of 2m - 2 negatives cosine 0
    expected = -math.log(math.exp(1 / temperature) / (math.exp(1 / temperature) + 2 * m - 2))
    assert SimCLRLoss(temperature)([z, z], [z, z]).item() == pytest.approx(expected, rel=1e-12)


def vicreg_by_formula(z1: torch.Tensor, z2: torch.Tensor) -> tuple[float, float, float]:
    a, b = z1.numpy(), z2.numpy()
    m, d = a.shape
    invariance = ((a - b) ** 2).sum() / (m * d)

    def variance(x):
        return sum(max(0.0, 1 - math.sqrt(x[:, j].var(ddof=1) + 1e-4)) for j in range(d)) / d

    def covariance(x):
        centred = x - x.mean(axis=0)
        cov = centred.T @ centred / (m - 1)
        return sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d

    return invariance, (variance(a) + variance(b)) / 2, covariance(a) + covariance(b)


def test_vicreg_matches_formula_and_reports_its_terms():
    z1, z2 = views(m=9, d=4, seed=5)
    z1 = z1 * 0.5  # std below 1 so the variance hinge is active
    invariance, variance, covariance = vicreg_by_formula(z1, z2)
    objective = VICRegLoss(sim=25.0, var=25.0, cov=1.0)
    loss = objective([z1, z2], [z1, z2])
    assert variance > 0
    assert loss.item() == pytest.approx(25 * invariance + 25 * variance + covariance, rel=1e-10)
    assert objective.stats["variance"] == pytest.approx(variance, rel=1e-10)


def test_vicreg_identical_wide_views_have_no_invariance_or_variance_cost():
    z = views(m=32, d=4, seed=6)[0] * 10
    objective = VICRegLoss()
    loss = objective([z, z], [z, z])
    assert objective.stats["invariance"] == 0.0 and objective.stats["variance"] == 0.0
    assert loss.item() == pytest.approx(objective.stats["covariance"], rel=1e-12)


@pytest.mark.parametrize("objective", [BarlowTwinsLoss(), SimCLRLoss(), VICRegLoss()])
def test_joint_objectives_send_gradients_to_both_views(objective):
    z1, z2 = views(seed=7, grad=True)
    objective([z1, z2], [z1.detach(), z2.detach()]).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["simsiam", "byol", "barlow_twins", "simclr", "vicreg", "mec"])
def test_losses_are_float32_under_bf16_autocast(name):
    objective = build_objective(loss_config(name=name))
    z = [v.bfloat16() for v in views(m=16, d=8, n=4, seed=8)]
    reference = objective([v.float() for v in z[:2]], [v.float() for v in z[2:]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = objective(z[:2], z[2:])
    assert loss.dtype == torch.float32
    # Same bf16-rounded inputs: any bf16 matmul inside would show up as a ~1e-2 relative error.
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)


def test_build_objective_uses_config_values():
    assert build_objective(loss_config(name="barlow_twins", barlow_lambda=0.02)).lambd == 0.02
    assert build_objective(loss_config(name="simclr", temperature=0.3)).temperature == 0.3
    vicreg = build_objective(loss_config(name="vicreg", vicreg_sim=1.0, vicreg_var=2.0, vicreg_cov=3.0))
    assert (vicreg.sim, vicreg.var, vicreg.cov) == (1.0, 2.0, 3.0)
    mec = build_objective(loss_config(name="mec", eps_d2=0.1, order=2, side="batch", lam_warmup_epochs=3.0))
    assert (mec.eps_d2, mec.order, mec.side, mec.warmup_epochs) == (0.1, 2, "batch", 3.0)


def test_build_objective_typo_lists_close_matches():
    with pytest.raises(UserError, match="did you mean mec"):
        build_objective(loss_config(name="mce"))


def test_registry_flags_match_the_papers():
    flags = {name: (cls.default_predictor, cls.default_teacher, cls.stop_gradient_target)
             for name, cls in ((n, OBJECTIVES.get(n)) for n in OBJECTIVES.names())}
    assert flags == {"mec": (True, True, False), "simsiam": (True, False, True), "byol": (True, True, False),
                     "barlow_twins": (False, False, False), "simclr": (False, False, False),
                     "vicreg": (False, False, False)}


def test_wrong_number_of_views_is_rejected():
    z = views(n=3)
    with pytest.raises(ValueError, match="two views"):
        SimSiamLoss()(z, z)
    with pytest.raises(ValueError, match="one shape"):
        SimCLRLoss()([z[0], z[1][:4]])


def test_simclr_rejects_non_positive_temperature():
    with pytest.raises(UserError, match="loss.temperature"):
        build_objective(loss_config(name="simclr", temperature=0.0))

"""MEC loss against independent formulations: exact log-det, App. A's power loop, the official code."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from mec_eval.objectives import OBJECTIVES, MECLoss, SimSiamLoss, build_objective, coding_length, mec_loss
from mec_eval.objectives.mec import resolve_side, taylor_trace
from mec_eval.utils import UserError


def loss_config(**overrides) -> types.SimpleNamespace:
    fields = dict(name="mec", eps_d2=0.06, order=4, side="auto", lam_warmup_epochs=10.0, temperature=0.1,
                  barlow_lambda=0.0051, vicreg_sim=25.0, vicreg_var=25.0, vicreg_cov=1.0)
    fields.update(overrides)
    return types.SimpleNamespace(**fields)


def unit_rows(m: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(m, d, generator=generator, dtype=dtype), dim=1)


def app_a_trace(c: torch.Tensor, order: int) -> torch.Tensor:
    """Paper App. A: accumulate (-1)^(k+1)/k * C^k with one matmul per order, then take the trace."""
    power, total = c, torch.zeros_like(c)
    for k in range(1, order + 1):
        if k > 1:
            power = power @ c
        total = total + power / k if k % 2 == 1 else total - power / k
    return torch.trace(total)


def numpy_mec_logdet(z1: torch.Tensor, z2: torch.Tensor, eps_d2: float) -> float:
    """-mu * log det(I_m + lam Z1 Z2^T) in numpy, rows normalised here."""
    a, b = (F.normalize(z, dim=1).double().numpy() for z in (z1, z2))
    m, d = a.shape
    sign, logdet = np.linalg.slogdet(np.eye(m) + a @ b.T / (m * eps_d2))
    assert sign > 0
    return -(m + d) / 2 * logdet


def test_taylor_approaches_exact_logdet_as_order_grows():
    z1, z2 = unit_rows(48, 96, 0), unit_rows(48, 96, 1)
    z2 = F.normalize(z1 + 0.5 * z2, dim=1)  # correlated views, as in training
    eps_d2 = 0.5
    exact = numpy_mec_logdet(z1, z2, eps_d2)
    assert mec_loss(z1, z2, eps_d2=eps_d2, exact=True).item() == pytest.approx(exact, rel=1e-12)
    errors = [abs(mec_loss(z1, z2, eps_d2=eps_d2, order=n).item() - exact) / abs(exact) for n in range(1, 9)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[3] < 1e-5  # spectral radius of C is ~0.1 here, so each order gains ~10x
    assert errors[7] < 1e-9


@pytest.mark.parametrize("m, d", [(12, 40), (40, 12)])
@pytest.mark.parametrize("exact", [False, True])
def test_batch_wise_equals_feature_wise(m, d, exact):
    """Eq. 4: Z1 Z2^T (m x m) and Z1^T Z2 (d x d) share their non-zero eigenvalues."""
    z1, z2 = unit_rows(m, d, 2), unit_rows(m, d, 3)
    for order in (1, 2, 3, 4, 5):
        batch = mec_loss(z1, z2, eps_d2=0.3, order=order, side="batch", exact=exact)
        feature = mec_loss(z1, z2, eps_d2=0.3, order=order, side="feature", exact=exact)
        auto = mec_loss(z1, z2, eps_d2=0.3, order=order, side="auto", exact=exact)
        torch.testing.assert_close(batch, feature, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(auto, batch, rtol=1e-12, atol=1e-12)


def test_order_one_is_scaled_cosine_similarity():
    """Eq. 23: the first-order loss is -mu * lam * sum_i cos(z1_i, z2_i)."""
    z1, z2 = torch.randn(20, 30, dtype=torch.float64), torch.randn(20, 30, dtype=torch.float64)
    m, d, eps_d2 = 20, 30, 0.06
    expected = -(m + d) / 2 / (m * eps_d2) * F.cosine_similarity(z1, z2, dim=1).sum()
    torch.testing.assert_close(mec_loss(z1, z2, eps_d2=eps_d2, order=1), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kwargs", [dict(order=4, side="batch"), dict(order=4, side="feature"),
                                    dict(order=3, side="auto"), dict(exact=True, side="batch"),
                                    dict(exact=True, side="feature")])
def test_gradcheck(kwargs):
    generator = torch.Generator().manual_seed(4)
    z1 = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    z2 = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: mec_loss(a, b, eps_d2=0.5, **kwargs), (z1, z2))


@pytest.mark.parametrize("side", ["batch", "feature"])
def test_efficient_trace_equals_app_a_power_loop(side):
    p, z = unit_rows(24, 16, 5), unit_rows(24, 16, 6)
    lam = 1 / (24 * 0.1)
    c = lam * (p @ z.T if side == "batch" else p.T @ z)
    for order in range(1, 7):
        torch.testing.assert_close(taylor_trace(p, z, lam, order, side), app_a_trace(c, order),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("side", ["batch", "feature"])
def test_trace_gradients_equal_autograd_through_app_a_loop(side):
    for order in range(1, 7):
        p, z = (unit_rows(10, 7, seed).requires_grad_(True) for seed in (11, 12))
        taylor_trace(p, z, 0.2, order, side).backward()
        q, y = (unit_rows(10, 7, seed).requires_grad_(True) for seed in (11, 12))
        app_a_trace(0.2 * (q @ y.T if side == "batch" else q.T @ y), order).backward()
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(z.grad, y.grad, rtol=1e-12, atol=1e-12)


def count_matrix_products(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(event.count for event in prof.key_averages() if event.key == "aten::mm")


@pytest.mark.parametrize("order, products", [(1, 0), (2, 3), (4, 5), (6, 7)])
def test_trace_needs_fewer_matrix_products_than_app_a(order, products):
    """Forward + backward: ours forms C..C^ceil(n/2) and C^(n-1) once; App. A under autograd costs 3n."""
    p, z = (unit_rows(8, 6, seed).requires_grad_(True) for seed in (7, 8))
    ours = count_matrix_products(lambda: taylor_trace(p, z, 0.1, order, "batch").backward())
    naive = count_matrix_products(lambda: app_a_trace(0.1 * p @ z.T, order).backward())
    assert (ours, naive) == (products, 3 * order)


def official_step_loss(p1, p2, z1, z2, lam_inv, order):
    """The official ``main_pretrain.py`` loss, re-derived: naive loop, -(T12 + T21) * 0.5 / m * lam_inv."""
    def trace(a, b):
        return app_a_trace(F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / lam_inv, order)

    m = p1.shape[0]
    mec_term = (trace(p1, z2) + trace(p2, z1)) * 0.5 / m
    return -mec_term * lam_inv, mec_term


@pytest.mark.parametrize("side", ["auto", "feature"])
def test_mec_objective_matches_official_code_through_the_warmup(side):
    m, d, eps_d2, warmup = 16, 32, 0.06, 10.0
    p1, p2, z1, z2 = (torch.randn(m, d, dtype=torch.float64) for _ in range(4))
    objective = build_objective(loss_config(side=side, eps_d2=eps_d2, lam_warmup_epochs=warmup))
    assert isinstance(objective, MECLoss)
    lam = 1 / (m * eps_d2)
    schedule = {0.0: 8 / lam, 2.5: 8 / lam - 7 / lam * 0.25, 5.0: 4.5 / lam, 10.0: 1 / lam, 37.25: 1 / lam}
    for epoch, lam_inv in schedule.items():
        objective.on_step(epoch)
        loss = objective([p1, p2], [z1, z2])
        expected, mec_term = official_step_loss(p1, p2, z1, z2, lam_inv, order=4)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
        assert objective.stats["lam"] == pytest.approx(1 / lam_inv, rel=1e-12)
        assert objective.stats["mec"] == pytest.approx(mec_term.item() * (m + d) / 2, rel=1e-12)


def test_mec_objective_order_one_is_simsiam_and_keeps_gradients():
    p1, p2, z1, z2 = (torch.randn(10, 6, requires_grad=True) for _ in range(4))
    objective = MECLoss(order=1, warmup_epochs=0)
    loss = objective([p1, p2], [z1, z2])
    torch.testing.assert_close(loss, SimSiamLoss()([p1, p2], [z1, z2]))
    loss.backward()
    # No detach inside: with a teacher the targets carry no graph; without one this is App. A's symmetric loss.
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (p1, p2, z1, z2))


@pytest.mark.parametrize("m, d", [(10, 30), (30, 10)])
def test_coding_length_matches_numpy_on_the_other_side(m, d):
    z = torch.randn(m, d, dtype=torch.float32)
    eps_d2 = 0.2
    rows = F.normalize(z.double(), dim=1).numpy()
    feature_gram = rows.T @ rows  # d x d, while coding_length takes the smaller of the two
    batch_gram = rows @ rows.T
    other = feature_gram if m <= d else batch_gram
    sign, logdet = np.linalg.slogdet(np.eye(other.shape[0]) + other / (m * eps_d2))
    assert sign > 0
    result = coding_length(z, eps_d2)
    assert result.dtype == torch.float64
    assert result.item() == pytest.approx((m + d) / 2 * logdet, rel=1e-10)


def test_negative_determinant_raises_with_a_fix():
    z1 = torch.eye(4, dtype=torch.float64)[:3]  # three orthonormal rows: Z1 Z1^T = I_3
    eps_d2 = 0.1  # lam = 1 / (3 * 0.1) > 1, so det(I - lam I_3) = (1 - lam)^3 < 0
    with pytest.raises(FloatingPointError, match="increase loss.eps_d2"):
        mec_loss(z1, -z1, eps_d2=eps_d2, exact=True)
    assert torch.isfinite(mec_loss(z1, z1, eps_d2=eps_d2, exact=True))


def test_bf16_inputs_give_float32_close_to_fp32():
    z1, z2 = (unit_rows(64, 128, seed, dtype=torch.float32).bfloat16() for seed in (9, 10))
    reference = mec_loss(z1.float(), z2.float())
    direct = mec_loss(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = mec_loss(z1.float(), z2.float())
        objective_loss = MECLoss()([z1, z2], [z2, z1])
    for value in (direct, under_autocast, objective_loss):
        assert value.dtype == torch.float32
    torch.testing.assert_close(direct, reference, rtol=1e-6, atol=0)
    torch.testing.assert_close(under_autocast, reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(order=0), "order"), (dict(order=2.0), "order"), (dict(side="rows"), "side"), (dict(eps_d2=0.0), "eps_d2"),
])
def test_mec_loss_rejects_bad_arguments(kwargs, message):
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=message):
        mec_loss(z, z, **kwargs)


def test_mec_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        mec_loss(torch.randn(4, 3), torch.randn(5, 3))


@pytest.mark.parametrize("overrides, key", [
    (dict(order=0), "loss.order"), (dict(side="rows"), "loss.side"), (dict(eps_d2=-1.0), "loss.eps_d2"),
])
def test_mec_objective_config_errors_are_user_errors(overrides, key):
    with pytest.raises(UserError, match=key):
        build_objective(loss_config(**overrides))


def test_mec_registered_with_paper_help():
    assert dict(OBJECTIVES.describe())["mec"].endswith("(Liu et al., NeurIPS 2022)")
    assert MECLoss.default_predictor and MECLoss.default_teacher and not MECLoss.stop_gradient_target


def test_auto_side_takes_the_smaller_matrix():
    assert resolve_side("auto", 64, 2048) == "batch"
    assert resolve_side("auto", 4096, 2048) == "feature"
    assert resolve_side("feature", 64, 2048) == "feature"

"""Diagnostics against closed forms, the identities of the matrix-information notes and independent formulations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mec_eval.diagnostics import (
    alignment,
    coding_length,
    compute_diagnostics,
    effective_rank,
    entropy_h2,
    joint_entropy,
    matrix_entropy,
    mutual_information,
    normalised,
    spectrum,
    total_coding_rate,
    umae_uniformity,
    uniformity,
)
from mec_eval.diagnostics.entropy import renyi_from_spectrum
from mec_eval.objectives import coding_length as reexported


def _random_inputs():
    """Features of several shapes and spectra: isotropic, low-rank, anisotropic, n < d and n > d."""
    g = torch.Generator().manual_seed(0)
    yield torch.randn(40, 16, generator=g, dtype=torch.float64)
    yield torch.randn(12, 50, generator=g, dtype=torch.float64)
    yield torch.randn(60, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 20, generator=g, dtype=torch.float64)
    yield torch.randn(30, 8, generator=g, dtype=torch.float64) * torch.logspace(0, -3, 8, dtype=torch.float64)
    yield torch.randn(25, 25, generator=g, dtype=torch.float64).abs()  # all-positive: one dominant direction


def _orthonormal(n: int, d: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, n, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    return q.T  # n orthonormal rows in R^d


@pytest.mark.parametrize("n,d", [(8, 8), (5, 12)])
def test_orthonormal_rows_have_entropy_log_n_and_erank_n(n, d):
    z = torch.eye(n, d, dtype=torch.float64) if n == d else _orthonormal(n, d)
    for alpha in (0.5, 1.0, 2.0, 3.0):
        assert matrix_entropy(z, alpha) == pytest.approx(math.log(n), abs=1e-10)
    assert effective_rank(z) == pytest.approx(n, rel=1e-10)
    assert entropy_h2(z) == pytest.approx(math.log(n), abs=1e-12)
    assert normalised(matrix_entropy(z), d) == pytest.approx(math.log(n) / math.log(d))


def test_rank_one_features_have_zero_entropy_and_erank_one():
    v = torch.randn(1, 32, dtype=torch.float64)
    z = torch.randn(50, 1, dtype=torch.float64).abs() * v  # every row along v (positive multiples)
    assert matrix_entropy(z) == pytest.approx(0.0, abs=1e-10)
    assert entropy_h2(z) == pytest.approx(0.0, abs=1e-12)
    assert effective_rank(z) == pytest.approx(1.0, abs=1e-10)
    assert umae_uniformity(z) == pytest.approx(1.0)


def test_k_equal_clusters_of_orthonormal_directions_have_entropy_log_k():
    base = _orthonormal(4, 10)
    z = base.repeat_interleave(5, dim=0)  # 20 rows, 4 directions, 5 each: p = (1/4, 1/4, 1/4, 1/4)
    assert matrix_entropy(z) == pytest.approx(math.log(4), abs=1e-10)
    assert entropy_h2(z) == pytest.approx(math.log(4), abs=1e-10)


def test_renyi_entropy_of_a_known_spectrum():
    p = torch.tensor([0.5, 0.25, 0.25, 0.0], dtype=torch.float64)
    assert renyi_from_spectrum(p, 1.0) == pytest.approx(1.5 * math.log(2))  # 0 log 0 = 0
    assert renyi_from_spectrum(p, 2.0) == pytest.approx(-math.log(0.375))
    assert renyi_from_spectrum(p, 1.0 + 1e-7) == pytest.approx(1.5 * math.log(2), abs=1e-6)  # alpha -> 1 limit
    with pytest.raises(ValueError, match="alpha"):
        renyi_from_spectrum(p, 0.0)


@pytest.mark.parametrize("centred", [False, True])
def test_exp_h2_le_erank_le_rank_and_h2_formula(centred):
    for z in _random_inputs():
        x = z - z.mean(0) if centred else z
        rank = torch.linalg.matrix_rank(x).item()
        erank, h2 = effective_rank(z, centred), entropy_h2(z, centred)
        assert math.exp(h2) <= erank + 1e-9 and erank <= rank + 1e-9
        # H_2 without eigendecomposition equals the spectral Renyi-2 entropy.
        assert h2 == pytest.approx(renyi_from_spectrum(spectrum(z, centred), 2.0), abs=1e-9)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
@pytest.mark.parametrize("centred", [False, True])
def test_mutual_information_lies_between_zero_and_the_smaller_entropy(alpha, centred):
    g = torch.Generator().manual_seed(1)
    for z in _random_inputs():
        for noise in (0.0, 0.3, 3.0):
            z2 = z + noise * torch.randn(z.shape, generator=g, dtype=torch.float64)
            mi = mutual_information(z, z2, alpha, centred)
            h1, h2 = matrix_entropy(z, alpha, centred), matrix_entropy(z2, alpha, centred)
            assert -1e-9 <= mi <= min(h1, h2) + 1e-9
            assert joint_entropy(z, z2, alpha, centred) == pytest.approx(h1 + h2 - mi)


def test_mutual_information_of_one_view_with_itself_is_its_entropy_plus_hadamard_gap():
    z = _orthonormal(6, 6)
    # K o K = I for orthonormal rows, so H(K o K) = log n = H(K) and I = H(K).
    assert mutual_information(z, z) == pytest.approx(math.log(6), abs=1e-10)


def test_umae_uniformity_is_exp_minus_h2_and_the_mean_squared_cosine():
    for centred in (False, True):
        for z in _random_inputs():
            x = z - z.mean(0) if centred else z
            unit = x / x.norm(dim=1, keepdim=True)
            direct = float(((unit @ unit.T) ** 2).mean())  # mean over all B x B pairs, diagonal included
            assert umae_uniformity(z, centred) == pytest.approx(direct, rel=1e-12)
            assert umae_uniformity(z, centred) == pytest.approx(math.exp(-entropy_h2(z, centred)), rel=1e-12)


@pytest.mark.parametrize("m,d", [(20, 50), (50, 20)])
def test_coding_length_matches_slogdet_on_both_gram_sides(m, d):
    z = torch.randn(m, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    unit = (z / z.norm(dim=1, keepdim=True)).numpy()
    eps_d2 = 0.06
    lam = 1.0 / (m * eps_d2)  # = d / (m eps^2) with eps^2 = eps_d2 * d (MEC Eq. 1)
    for gram in (unit @ unit.T, unit.T @ unit):  # m x m and d x d: same value (Sylvester, MEC Eq. 4)
        sign, logdet = np.linalg.slogdet(np.eye(len(gram)) + lam * gram)
        assert sign > 0
        assert float(coding_length(z, eps_d2)) == pytest.approx((m + d) / 2 * logdet, rel=1e-10)
    assert reexported is coding_length  # objectives import it from the diagnostics package


def test_total_coding_rate_against_slogdet_and_its_second_order_expansion():
    z = torch.randn(64, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    unit = z / z.norm(dim=1, keepdim=True)
    b, d = unit.shape
    _sign, logdet = torch.linalg.slogdet(torch.eye(d, dtype=torch.float64) + (1.0 / d) * unit.T @ unit)
    assert total_coding_rate(z, 1.0) == pytest.approx(float(logdet), rel=1e-12)
    mean_cos2 = umae_uniformity(z)
    errors = []
    for mu in (0.1, 0.05, 0.025):
        second_order = mu * b / d - (mu ** 2 * b ** 2 / (2 * d ** 2)) * mean_cos2  # the notes' expansion
        errors.append(abs(total_coding_rate(z, mu) - second_order))
    # The remainder is O(mu^3): halving mu divides it by about 8.
    assert 6.5 < errors[0] / errors[1] < 9.5 and 6.5 < errors[1] / errors[2] < 9.5


def test_alignment_and_uniformity_against_a_direct_pairwise_formulation():
    g = torch.Generator().manual_seed(5)
    z1 = torch.randn(50, 8, generator=g, dtype=torch.float64)
    z2 = z1 + 0.2 * torch.randn(50, 8, generator=g, dtype=torch.float64)
    a, b = (x / x.norm(dim=1, keepdim=True) for x in (z1, z2))
    assert alignment(z1, z2) == pytest.approx(float(((a - b) ** 2).sum(1).mean()), rel=1e-12)
    # Wang & Isola's reference: torch.pdist (pairs i < j), log mean exp(-2 d^2).
    reference = float(torch.pdist(a, p=2).pow(2).mul(-2).exp().mean().log())
    assert uniformity(z1) == pytest.approx(reference, rel=1e-10)
    assert uniformity(z1, centred=True) != pytest.approx(reference)
    with pytest.raises(ValueError, match="2 samples"):
        uniformity(z1[:1])


def test_uniformity_blocks_cover_every_pair(monkeypatch):
    from mec_eval.diagnostics import geometry
    z = torch.randn(37, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    whole = uniformity(z)
    monkeypatch.setattr(geometry, "BLOCK_ROWS", 8)
    assert uniformity(z) == pytest.approx(whole, rel=1e-13)


def test_nearly_collapsed_features_give_finite_values():
    v = torch.randn(1, 64, dtype=torch.float64)
    z = v.repeat(200, 1) + 1e-9 * torch.randn(200, 64, dtype=torch.float64)
    z2 = v.repeat(200, 1) + 1e-9 * torch.randn(200, 64, dtype=torch.float64)
    for centred in (False, True):
        values = compute_diagnostics(z.float(), z2.float(), centred=centred)
        assert all(math.isfinite(x) for x in values.values()), values
    plain = compute_diagnostics(z, z2)
    assert plain["effective_rank"] == pytest.approx(1.0, abs=1e-6) and plain["entropy_h1"] >= 0
    # Centring removes the shared direction: what is left is the isotropic noise.
    assert compute_diagnostics(z, z2, centred=True)["effective_rank"] > 40


def test_exactly_collapsed_centred_features_are_a_single_point():
    z = torch.ones(10, 4)
    values = compute_diagnostics(z, z, centred=True)
    assert values["entropy_h1"] == 0.0 and values["effective_rank"] == 1.0 and values["entropy_h2"] == 0.0
    assert all(math.isfinite(x) for x in values.values())


def test_bad_inputs_are_value_errors():
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        compute_diagnostics(torch.randn(5))
    with pytest.raises(ValueError, match="NaN"):
        compute_diagnostics(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="same number of rows"):
        joint_entropy(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="eps_d2"):
        coding_length(torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError, match="mu"):
        total_coding_rate(torch.randn(4, 3), -1.0)
    with pytest.raises(ValueError, match="d >= 2"):
        normalised(1.0, 1)


@pytest.mark.parametrize("n, d, centred", [(300, 40, False), (40, 300, True), (64, 64, False)])
def test_the_one_pass_summary_equals_each_stand_alone_quantity(n, d, centred):
    from mec_eval.diagnostics import (
        coding_length,
        effective_rank,
        entropy_h2,
        matrix_entropy,
        single_view_diagnostics,
        total_coding_rate,
        umae_uniformity,
        uniformity,
    )

    z = torch.randn(n, d, generator=torch.Generator().manual_seed(n + d)) + 0.5
    out = single_view_diagnostics(z, eps_d2=0.06, mu=3.0, centred=centred)
    assert out["coding_length"] == pytest.approx(float(coding_length(z, 0.06, centred)), rel=1e-10)
    assert out["total_coding_rate"] == pytest.approx(total_coding_rate(z, 3.0, centred), rel=1e-10)
    assert out["entropy_h1"] == pytest.approx(matrix_entropy(z, 1.0, centred), rel=1e-10)
    assert out["effective_rank"] == pytest.approx(effective_rank(z, centred), rel=1e-10)
    assert out["entropy_h2"] == pytest.approx(entropy_h2(z, centred), rel=1e-10)
    assert out["umae_uniformity"] == pytest.approx(umae_uniformity(z, centred), rel=1e-10)
    assert out["uniformity"] == pytest.approx(uniformity(z, 2.0, centred), rel=1e-12)

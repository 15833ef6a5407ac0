"""MEC as a regulariser of any objective (MEC Figure 5): gradients, weight 0, config wiring, short training."""
from __future__ import annotations

import json
import math

import pytest
import torch

from mec_eval.config import LossConfig, from_dict, load_pretrain_config
from mec_eval.objectives import (
    MECLoss,
    MECRegularized,
    SimCLRLoss,
    SimSiamLoss,
    build_objective,
)
from mec_eval.utils import UserError


def _views(seed: int = 0, m: int = 32, d: int = 16):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(m, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]


def _grads(objective, online, target):
    loss = objective(online, target)
    return loss, torch.autograd.grad(loss, online)


@pytest.mark.parametrize("base_cls", [SimCLRLoss, SimSiamLoss])
def test_regulariser_gradient_is_the_mec_gradient_scaled(base_cls):
    online = _views(1)
    target = [z.detach() + 0.1 for z in _views(2)] if base_cls is SimSiamLoss else online
    base, mec = base_cls(), MECLoss(eps_d2=0.06, order=4, warmup_epochs=0)
    wrapped = MECRegularized(base_cls(), weight=0.3, eps_d2=0.06, order=4, warmup_epochs=0)
    _, g_base = _grads(base, online, target)
    _, g_mec = _grads(mec, online, target)
    loss, g_all = _grads(wrapped, online, target)
    for a, b, c in zip(g_all, g_base, g_mec):
        torch.testing.assert_close(a - b, 0.3 * c, rtol=1e-10, atol=1e-12)
    assert wrapped.stats["mec_reg"] == pytest.approx(float(mec(online, target).detach()))
    assert float(loss) == pytest.approx(wrapped.stats["base_loss"] + 0.3 * wrapped.stats["mec_reg"])


def test_weight_zero_is_the_plain_objective_bit_for_bit():
    online = _views(3)
    plain_loss, plain_grads = _grads(SimCLRLoss(), online, online)
    loss, grads = _grads(MECRegularized(SimCLRLoss(), weight=0.0), online, online)
    assert torch.equal(loss, plain_loss) and all(torch.equal(a, b) for a, b in zip(grads, plain_grads))


def test_the_wrapper_keeps_the_base_architecture_and_the_lam_warmup():
    wrapped = MECRegularized(SimSiamLoss(), weight=1.0, warmup_epochs=10)
    base = SimSiamLoss()
    assert (wrapped.default_predictor, wrapped.default_teacher, wrapped.stop_gradient_target) == \
        (base.default_predictor, base.default_teacher, base.stop_gradient_target)
    wrapped.on_step(5.0)
    assert wrapped.mec.lam_inv_factor() == pytest.approx(8 + (1 - 8) * 0.5)


def test_the_objective_factory_applies_the_config():
    cfg = from_dict(LossConfig, {"name": "simclr", "regularizer": "mec", "regularizer_weight": 0.5, "eps_d2": 0.1})
    objective = build_objective(cfg)
    assert isinstance(objective, MECRegularized) and isinstance(objective.base, SimCLRLoss)
    assert (objective.weight, objective.mec.eps_d2) == (0.5, 0.1)
    assert isinstance(build_objective(from_dict(LossConfig, {"name": "simclr"})), SimCLRLoss)
    with pytest.raises(UserError, match="adds MEC to itself"):
        build_objective(from_dict(LossConfig, {"name": "mec", "regularizer": "mec"}))
    for bad in ({"regularizer": "vicreg"}, {"regularizer_weight": -1.0}, {"regularizer_weight": "heavy"}):
        with pytest.raises(UserError, match="regularizer"):
            from_dict(LossConfig, bad)


@pytest.mark.parametrize("name", ["simclr", "simsiam"])
def test_simclr_and_simsiam_with_mec_train_a_few_steps_on_digits(tmp_path, name):
    from mec_eval.pretrain.main import pretrain

    cfg = load_pretrain_config("digits", [f"loss.name={name}", "loss.regularizer=mec", "optim.epochs=1",
                                          "run.max_steps_per_epoch=3", "optim.batch_size=64", "model.proj_hidden=64",
                                          "model.proj_dim=64", "model.pred_hidden=32", "run.log_every=1",
                                          "run.precision=fp32", "model.teacher=false"])
    pretrain(cfg, tmp_path, quiet=True)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [line for line in lines if line.get("event") == "iteration"]
    assert len(steps) == 3
    assert all(math.isfinite(s["loss"]) and math.isfinite(s["mec_reg"]) for s in steps)
    assert all(s["loss"] == pytest.approx(s["base_loss"] + s["mec_reg"], rel=1e-5) for s in steps)

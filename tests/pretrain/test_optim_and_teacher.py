import math

import pytest
import torch
from torch import nn

from mec_eval.models import EMATeacher, build_predictor, build_projector, cosine_momentum
from mec_eval.training.optim import LARS, build_optimizer
from mec_eval.training.schedule import LRSchedule, scaled_lr
from mec_eval.utils import UserError


def test_warmup_then_cosine_known_points():
    peak = 2.0
    lr = LRSchedule("cosine", iters_per_epoch=1, total_iters=100, warmup_epochs=10).factor
    assert peak * lr(0) == 0.0
    assert peak * lr(5) == pytest.approx(1.0)
    assert peak * lr(10) == pytest.approx(peak)
    assert peak * lr(55) == pytest.approx(1.0)  # half-way down the cosine
    assert peak * lr(100) == pytest.approx(0.0, abs=1e-12)
    assert scaled_lr(0.5, 1024) == 2.0  # App. C: 0.5 * 1024 / 256


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100) == pytest.approx(0.996)
    assert cosine_momentum(50, 100) == pytest.approx(0.998)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)


def test_ema_teacher_update_parameters_only():
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = EMATeacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in teacher.module.parameters()]
    teacher.update(student, 0.9)
    for b, t, s in zip(before, teacher.module.parameters(), student.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)
        assert not t.requires_grad


def test_projector_and_predictor_shapes_follow_app_c():
    proj = build_projector(2048, 2048, 2048, 3)
    linears = [m for m in proj if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(2048, 2048)] * 3
    assert linears[0].bias is None and not linears[-1].bias.requires_grad
    assert isinstance(proj[-1], nn.BatchNorm1d) and not proj[-1].affine
    pred = build_predictor(2048, 512)
    assert (pred[0].in_features, pred[0].out_features, pred[-1].out_features) == (2048, 512, 2048)


def test_lars_trust_ratio_against_hand_computation():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.1, momentum=0.0, weight_decay=0.0, trust_coefficient=0.001)
    w.grad = torch.tensor([[0.0, 2.0]])  # norm 2
    b.grad = torch.tensor([0.5])
    opt.step()
    trust = 0.001 * 5 / 2
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0 - 0.1 * trust * 2.0]]))
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * 0.5]))  # 1-D: plain SGD


def test_unknown_optimizer_is_user_error():
    with pytest.raises(UserError, match="optim.name"):
        build_optimizer([nn.Parameter(torch.zeros(1))], "adamw2", 0.1, 0.9, 0.0)
    assert math.isclose(scaled_lr(0.3, 4096), 4.8)

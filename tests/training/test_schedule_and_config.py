"""The one schedule and lr-scaling rule reproduce the two implementations they replaced, value for value;
the engine's new config fields are validated like the others."""
import math

import pytest
import torch
from torch import nn

from mec_eval.config import EvalOptimConfig, OptimConfig, from_dict, load_pretrain_config
from mec_eval.tasks.configs import LinearConfig, SemiConfig
from mec_eval.training.distributed import maybe_sync_batchnorm
from mec_eval.training.engine import make_plan
from mec_eval.training.optim import build_optimizer
from mec_eval.training.schedule import LRSchedule, scaled_lr, schedule_from_config
from mec_eval.utils import UserError


def old_pretrain_lr(epoch: float, peak: float, warmup: float, total: float) -> float:
    """The replaced ``pretrain/optim.py warmup_cosine`` (official MEC main_pretrain.py adjust_learning_rate)."""
    if warmup > 0 and epoch < warmup:
        return peak * epoch / warmup
    progress = min(max((epoch - warmup) / max(total - warmup, 1e-12), 0.0), 1.0)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def old_task_factor(kind: str, step: int, per_epoch: int, epochs: int, total: int) -> float:
    """The replaced ``tasks/training.py lr_factor`` without warm-up (no task YAML uses one)."""
    if kind == "constant":
        return 1.0
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(max(step / max(total, 1), 0.0), 1.0)))
    return 0.5 * (1 + math.cos(math.pi * math.floor(step / per_epoch) / epochs))


def test_pretraining_schedule_equals_the_official_mec_formula():
    """imagenet.yaml (App. C): batch 256 -> 512 here, 10 warm-up epochs, 100 epochs, 5004 iterations per epoch."""
    cfg = load_pretrain_config("imagenet", ["optim.batch_size=512"])
    peak = scaled_lr(cfg.optim.base_lr, 512, cfg.optim.lr_scaling)
    assert peak == 1.0  # 0.5 * 512 / 256
    schedule = schedule_from_config(cfg.optim, 5004, 100 * 5004)
    for it in (0, 1, 2502, 50039, 50040, 50041, 123456, 275220, 500399):
        old = old_pretrain_lr(it / 5004, peak, 10, 100)
        assert peak * schedule.factor(it) == pytest.approx(old, rel=1e-12, abs=1e-15), it
    assert schedule.factor(25020) == pytest.approx(0.5)  # half-way through the warm-up


@pytest.mark.parametrize("kind, n, batch, epochs, steps", [
    ("cosine", 1257, 4096, 100, 0),        # linear.yaml on digits: one iteration per epoch
    ("cosine", 80, 8, 0, 50),              # transfer-finetune: 50 steps, per-step cosine
    ("cosine-epoch", 126, 32, 20, 0),      # semi-10pct: stepped per epoch, ragged last batch
    ("constant", 100, 30, 3, 0),
])
def test_task_schedules_equal_the_replaced_formula(kind, n, batch, epochs, steps):
    plan = make_plan(n, batch, epochs, steps, world=1)
    schedule = LRSchedule(kind, plan.iters_per_epoch, plan.total_iters)
    for it in range(plan.total_iters):
        assert schedule.factor(it) == old_task_factor(kind, it, plan.iters_per_epoch, plan.epochs, plan.total_iters)


def test_multistep_is_detectron2s_warmup_multistep_without_the_warmup_factor():
    schedule = LRSchedule("multistep", iters_per_epoch=100, total_iters=24000, milestones=(18000, 22000))
    assert [schedule.factor(i) for i in (0, 17999, 18000, 21999, 22000, 23999)] == \
        pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    warm = LRSchedule("multistep", iters_per_epoch=100, total_iters=1000, warmup_epochs=1, milestones=(500,))
    assert [warm.factor(i) for i in (0, 50, 100, 499, 500)] == pytest.approx([0, 0.5, 1, 1, 0.1])


def test_lr_scaling_known_values():
    assert scaled_lr(0.03, 4096, "linear") == pytest.approx(0.48)  # main_lincls.py
    assert scaled_lr(0.5, 1024, "linear") == 2.0                  # MEC App. C
    assert scaled_lr(0.005, 256, "none") == 0.005                  # Barlow Twins evaluate.py
    assert make_plan(1257, 4096, 1, world=2).effective_batch == 1256  # 628 per process


def test_adamw_and_nesterov_and_per_group_lr():
    w, b = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2))
    opt = build_optimizer([{"params": [w]}, {"params": [b], "lr": 0.5}], "adamw", 0.1, weight_decay=0.05,
                          betas=(0.8, 0.9))
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["betas"] == (0.8, 0.9)
    assert [g["peak_lr"] for g in opt.param_groups] == [0.1, 0.5]
    sgd = build_optimizer([w], "sgd", 0.1, 0.9, nesterov=True)
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["peak_lr"] == 0.1


@pytest.mark.parametrize("section, data, needle", [
    (EvalOptimConfig, {"schedule": "multistep"}, "milestones"),
    (EvalOptimConfig, {"schedule": "multistep", "milestones": [200, 100]}, "increasing"),
    (EvalOptimConfig, {"schedule": "cosin"}, "did you mean cosine"),
    (EvalOptimConfig, {"name": "adam"}, "one of sgd, lars, adamw"),
    (EvalOptimConfig, {"betas": [0.9]}, "at least 2"),
    (EvalOptimConfig, {"betas": [0.9, 1.5]}, "betas"),
    (EvalOptimConfig, {"gamma": 0}, "gamma"),
    (EvalOptimConfig, {"save_every": -1}, "save_every"),
    (EvalOptimConfig, {"log_every": 1.5}, "log_every"),
    (EvalOptimConfig, {"sync_bn": "yes"}, "sync_bn"),
    (EvalOptimConfig, {"save_evry": 5}, "did you mean optim.save_every"),
    (OptimConfig, {"milestones": [0]}, "milestones"),
])
def test_bad_values_of_the_new_fields_are_user_errors(section, data, needle):
    with pytest.raises(UserError, match=needle):
        from_dict(section, data, "optim.")


def test_new_pretraining_run_fields_are_checked():
    with pytest.raises(UserError, match="run.save_state_every"):
        load_pretrain_config("digits", ["run.save_state_every=-2"])
    with pytest.raises(UserError, match="run.sync_bn"):
        load_pretrain_config("digits", ["run.sync_bn=3"])
    cfg = load_pretrain_config("digits")
    assert cfg.run.sync_bn and cfg.optim.lars_exclude_1d and cfg.run.save_state_every == 1000


def test_protocol_defaults_keep_sync_bn_off_for_classification():
    assert not LinearConfig(protocol="paper").optim.sync_bn and not SemiConfig(protocol="paper").optim.sync_bn
    assert not LinearConfig(protocol="paper").optim.lars_exclude_1d  # apex LARC: trust ratio on every parameter


@pytest.mark.parametrize("asked, distributed, device, converted", [
    (False, True, "cuda", False), (True, False, "cuda", False), (True, True, "cpu", False), (True, True, "cuda", True),
])
def test_sync_batchnorm_only_when_asked_and_distributed(asked, distributed, device, converted):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    out, note = maybe_sync_batchnorm(model, asked, distributed, torch.device(device))
    assert isinstance(out[1], nn.SyncBatchNorm) == converted and note
    assert out[1].weight is model[1].weight or not converted  # same parameters: optimiser groups stay valid

"""The shared supervised-training loop: schedules against torch's, LARC step, resume, frozen probe head."""
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import TensorDataset

from mec_eval.config import EvalOptimConfig
from mec_eval.pretrain.optim import LARS
from mec_eval.tasks.linear import probe_head
from mec_eval.tasks.linear_fast import fit_logistic
from mec_eval.tasks import training
from mec_eval.tasks.training import Classifier, Trainer, lr_factor, make_plan, peak_lr
from mec_eval.utils import UserError


def _torch_schedule(scheduler_cls, steps, stepped_every, total, **kw):
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = scheduler_cls(opt, **kw)
    out = []
    for step in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if (step + 1) % stepped_every == 0:
            sched.step()
    return out


def test_cosine_per_step_equals_torch_cosine_annealing():
    """ssl-transfer finetune.py: CosineAnnealingLR(T_max=steps), stepped every iteration."""
    optim = EvalOptimConfig(steps=50, batch_size=8, schedule="cosine")
    plan = make_plan(80, optim)
    ours = [lr_factor(optim, s, plan) for s in range(50)]
    ref = _torch_schedule(torch.optim.lr_scheduler.CosineAnnealingLR, 50, 1, 50, T_max=50)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_cosine_epoch_equals_torch_stepped_per_epoch():
    """Barlow Twins evaluate.py: CosineAnnealingLR(T_max=epochs), stepped once per epoch."""
    optim = EvalOptimConfig(epochs=4, batch_size=10, schedule="cosine-epoch")
    plan = make_plan(30, optim)  # 3 iterations per epoch
    ours = [lr_factor(optim, s, plan) for s in range(plan.total_iters)]
    ref = _torch_schedule(torch.optim.lr_scheduler.CosineAnnealingLR, 12, 3, 12, T_max=4)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_plan_and_lr_scaling():
    optim = EvalOptimConfig(epochs=100, batch_size=4096, base_lr=0.03)
    plan = make_plan(1257, optim)
    assert (plan.batch_size, plan.iters_per_epoch, plan.total_iters) == (1257, 1, 100)
    assert peak_lr(optim, 4096) == pytest.approx(0.48)  # main_lincls.py: 0.03 * 4096 / 256
    assert make_plan(100, EvalOptimConfig(steps=25, batch_size=64)).epochs == 13
    with pytest.raises(UserError, match="lr_scaling"):
        peak_lr(EvalOptimConfig(lr_scaling="sqrt"), 256)


def test_lars_on_every_parameter_matches_apex_larc_formula():
    """LARC(clip=False) wrapping SGD: grad *= trust*|p|/|g| for every parameter, biases included."""
    torch.manual_seed(0)
    weight, bias = nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(4))
    grads = [torch.randn(4, 3), torch.randn(4)]
    expected = [p.detach() - 0.5 * 0.001 * p.norm() / g.norm() * g for p, g in zip((weight, bias), grads)]
    opt = LARS([weight, bias], lr=0.5, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001, exclude_1d=False)
    weight.grad, bias.grad = grads
    opt.step()
    torch.testing.assert_close(weight.detach(), expected[0])
    torch.testing.assert_close(bias.detach(), expected[1])


def test_probe_head_is_the_official_one():
    torch.manual_seed(0)
    head = probe_head(2048, 1000)
    bn, linear = head
    assert isinstance(bn, nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6
    assert linear.weight.std().item() == pytest.approx(0.01, rel=0.02) and linear.bias.abs().max() == 0


def test_fit_logistic_equals_sklearn_objective():
    """mean CE + wd/2 |W|^2 on standardised features == sklearn LogisticRegression(C=1/(wd N))."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)
    wd = 1e-2
    ours = fit_logistic(torch.from_numpy(x), torch.from_numpy(y), 3, wd, max_iter=500)
    z = (x - x.mean(0)) / x.std(0, ddof=1)
    ref = LogisticRegression(C=1 / (wd * len(x)), tol=1e-10, max_iter=10_000).fit(z, y)
    ours_p = torch.softmax(ours.scores(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(ours_p, ref.predict_proba(z), atol=2e-3)


class _TinyBackbone(nn.Module):
    feature_dim = 8

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv(x)).relu().mean((2, 3))


def _trainer(tmp_path, name, epochs, frozen):
    torch.manual_seed(0)
    model = Classifier(_TinyBackbone(), nn.Linear(8, 3), frozen=frozen, chunk=4)
    params = list(model.head.parameters()) if frozen else list(model.parameters())
    optim = EvalOptimConfig(name="sgd", epochs=epochs, batch_size=8, base_lr=0.5, lr_scaling="none")
    return Trainer(model, [{"params": params, "lr": 0.5}], optim, torch.device("cpu"), None, seed=3,
                   state_path=tmp_path / name / "state.pt", quiet=True)


@pytest.mark.parametrize("frozen", [True, False])
def test_resume_after_an_interruption_is_bit_identical(tmp_path, frozen, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(30, 3, 6, 6, generator=gen), torch.randint(0, 3, (30,), generator=gen))
    (tmp_path / "straight").mkdir()
    (tmp_path / "resumed").mkdir()
    straight = _trainer(tmp_path, "straight", 4, frozen)
    straight.fit(data)
    saves = []
    real_save = training.atomic_torch_save

    def save_then_die(obj, path):  # the job is killed right after its second epoch is saved
        real_save(obj, path)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, "resumed", 4, frozen).fit(data)
    monkeypatch.setattr(training, "atomic_torch_save", real_save)
    resumed = _trainer(tmp_path, "resumed", 4, frozen)       # a fresh process continues
    resumed.fit(data)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    state = torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (4, 16)
    if frozen:  # the frozen backbone never changed (BatchNorm statistics included)
        fresh = _trainer(tmp_path, "unused", 1, frozen).model.backbone.state_dict()
        for key, value in resumed.model.backbone.state_dict().items():
            assert torch.equal(value, fresh[key]), key


def test_non_finite_loss_names_the_learning_rate(tmp_path):
    data = TensorDataset(torch.full((8, 3, 4, 4), float("nan")), torch.zeros(8, dtype=torch.long))
    trainer = _trainer(tmp_path, "nan", 1, frozen=False)
    trainer.state_path.parent.mkdir()
    with pytest.raises(UserError, match="optim.base_lr"):
        trainer.fit(data)


def test_frozen_classifier_chunks_give_the_same_features():
    torch.manual_seed(0)
    backbone = _TinyBackbone().eval()
    head = nn.Linear(8, 2)
    x = torch.randn(10, 3, 5, 5)
    whole = Classifier(backbone, head, frozen=True, chunk=100)(x)
    chunked = Classifier(backbone, head, frozen=True, chunk=3)(x)
    torch.testing.assert_close(whole, chunked)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert math.isfinite(whole.sum().item())

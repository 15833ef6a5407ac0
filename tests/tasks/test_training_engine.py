"""Trained tasks on the shared engine: schedules against torch's, LARC step, resume, frozen probe head."""
import json
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import TensorDataset

from mec_eval.config import EvalDataConfig, EvalOptimConfig, EvalRunConfig
from mec_eval.tasks.linear import probe_head
from mec_eval.tasks.linear_fast import fit_logistic
from mec_eval.tasks.training import Classifier, classifier_engine
from mec_eval.training import state as state_module
from mec_eval.training.engine import make_plan
from mec_eval.training.optim import LARS
from mec_eval.training.schedule import scaled_lr, schedule_from_config
from mec_eval.utils import UserError


def _factors(optim: EvalOptimConfig, n_train: int) -> list[float]:
    plan = make_plan(n_train, optim.batch_size, optim.epochs, optim.steps, world=1)
    schedule = schedule_from_config(optim, plan.iters_per_epoch, plan.total_iters)
    return [schedule.factor(i) for i in range(plan.total_iters)]


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
    ours = _factors(EvalOptimConfig(steps=50, batch_size=8, schedule="cosine"), 80)
    ref = _torch_schedule(torch.optim.lr_scheduler.CosineAnnealingLR, 50, 1, 50, T_max=50)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_cosine_epoch_equals_torch_stepped_per_epoch():
    """Barlow Twins evaluate.py: CosineAnnealingLR(T_max=epochs), stepped once per epoch."""
    ours = _factors(EvalOptimConfig(epochs=4, batch_size=10, schedule="cosine-epoch"), 30)  # 3 iterations per epoch
    ref = _torch_schedule(torch.optim.lr_scheduler.CosineAnnealingLR, 12, 3, 12, T_max=4)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_plan_and_lr_scaling():
    plan = make_plan(1257, 4096, 100, world=1)
    assert (plan.effective_batch, plan.iters_per_epoch, plan.total_iters) == (1257, 1, 100)
    assert scaled_lr(0.03, 4096, "linear") == pytest.approx(0.48)  # main_lincls.py: 0.03 * 4096 / 256
    assert make_plan(100, 64, 0, steps=25, world=1).epochs == 13
    assert make_plan(1257, 256, 2, world=1).total_iters == 10  # a ragged last batch of 233 is kept
    assert make_plan(33, 8, 1, world=1).iters_per_epoch == 4  # a last batch of 1 image is dropped (BatchNorm)
    with pytest.raises(UserError, match="lr_scaling"):
        scaled_lr(0.1, 256, "sqrt")


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


def _engine(tmp_path, name, epochs, frozen, data):
    torch.manual_seed(0)
    model = Classifier(_TinyBackbone(), nn.Linear(8, 3), frozen=frozen, chunk=4)
    params = list(model.head.parameters()) if frozen else list(model.parameters())
    optim = EvalOptimConfig(name="sgd", epochs=epochs, batch_size=8, base_lr=0.5, lr_scaling="none", save_every=3)
    run = EvalRunConfig(device="cpu", precision="fp32", seed=3)
    return classifier_engine(model, [{"params": params}], data, optim, EvalDataConfig(), run, tmp_path / name,
                             quiet=True)


def _data(value=None):
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(30, 3, 6, 6, generator=gen) if value is None else torch.full((8, 3, 4, 4), value)
    return TensorDataset(images, torch.randint(0, 3, (len(images),), generator=gen))


@pytest.mark.parametrize("frozen", [True, False])
def test_resume_after_an_interruption_mid_epoch_is_bit_identical(tmp_path, frozen, monkeypatch):
    data = _data()
    straight = _engine(tmp_path, "straight", 4, frozen, data)
    assert straight.fit() == 16  # 4 epochs x 4 iterations (3 full batches of 8 and one of 6)
    saved = []
    real_save = state_module.atomic_torch_save

    def save_then_die(obj, path):  # the job is killed right after its third save (iteration 6, mid-epoch 2)
        real_save(obj, path)
        saved.append(obj["iteration"])
        if len(saved) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(state_module, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _engine(tmp_path, "resumed", 4, frozen, data).fit()
    assert saved == [3, 4, 6]  # every 3 iterations plus each epoch end
    monkeypatch.setattr(state_module, "atomic_torch_save", real_save)
    resumed = _engine(tmp_path, "resumed", 4, frozen, data)       # a fresh process continues
    resumed.fit()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    state = torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)
    assert state["iteration"] == 16
    if frozen:  # the frozen backbone never changed (BatchNorm statistics included)
        torch.manual_seed(0)
        fresh = _TinyBackbone().state_dict()
        for key, value in resumed.model.backbone.state_dict().items():
            assert torch.equal(value, fresh[key]), key


def _logged(workdir) -> list[int]:
    lines = (workdir / "log.jsonl").read_text().splitlines() if (workdir / "log.jsonl").exists() else []
    return [r["epoch"] for r in map(json.loads, lines) if r.get("event") == "train_epoch"]


def test_kill_between_an_epoch_end_save_and_its_log_line_loses_no_epoch(tmp_path, monkeypatch):
    """kill -9 right after the epoch-1 save, before its log line: the resumed run logs epoch 1 (from the state)
    and every later epoch, each once, with the values an uninterrupted run logs."""
    data = _data()
    straight = _engine(tmp_path, "straight", 3, True, data)
    straight.fit()
    real_save = state_module.atomic_torch_save

    def save_then_die(obj, path):
        real_save(obj, path)
        if obj["iteration"] == 4:  # the end of epoch 1 (4 iterations per epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(state_module, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _engine(tmp_path, "resumed", 3, True, data).fit()
    assert _logged(tmp_path / "resumed") == []  # saved, never logged
    monkeypatch.setattr(state_module, "atomic_torch_save", real_save)
    _engine(tmp_path, "resumed", 3, True, data).fit()
    assert _logged(tmp_path / "resumed") == [1, 2, 3]
    _engine(tmp_path, "resumed", 3, True, data).fit()  # a re-run of a finished run replays nothing twice
    assert _logged(tmp_path / "resumed") == [1, 2, 3]

    def losses(name):
        lines = (tmp_path / name / "log.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r.get("event") == "train_epoch"]
    assert losses("resumed") == losses("straight")


def test_non_finite_loss_names_the_learning_rate(tmp_path):
    with pytest.raises(UserError, match="non-finite.*optim.base_lr"):
        _engine(tmp_path, "nan", 1, False, _data(float("nan"))).fit()


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

"""Collapse logging during pre-training (``run.diagnostics_every``): H_1 and effective rank of the projections."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from mec_eval.config import load_pretrain_config
from mec_eval.log import JsonLogger
from mec_eval.pretrain.collapse import CollapseMonitor


def _logged(monitor: CollapseMonitor, projector: nn.Module, iteration: int):
    monitor.before(iteration)
    projector(torch.randn(128, 32, generator=torch.Generator().manual_seed(iteration)))  # view 1
    projector(torch.randn(128, 32))  # view 2: not captured
    return monitor.after(iteration)


def test_a_collapsed_projector_logs_erank_one_and_a_random_one_well_above(tmp_path):
    collapsed = nn.Linear(32, 64)
    with torch.no_grad():  # every output on one ray: rank one, positive multiples of u
        collapsed.weight.copy_(torch.rand(64, 1) @ torch.rand(1, 32))
        collapsed.bias.zero_()
    healthy = nn.Linear(32, 64)
    logger = JsonLogger(tmp_path / "log.jsonl", quiet=True)
    low = _logged(CollapseMonitor(collapsed, 1, logger), nn.Sequential(nn.ReLU(), collapsed), 0)
    high = _logged(CollapseMonitor(healthy, 1, logger), healthy, 0)
    assert low["effective_rank"] == pytest.approx(1.0, abs=1e-6) and low["entropy_h1"] == pytest.approx(0, abs=1e-6)
    assert high["effective_rank"] > 20 and high["effective_rank"] == pytest.approx(math.exp(high["entropy_h1"]))
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["diagnostics", "diagnostics"] and lines[0]["embedding"] == "projector"


def test_only_every_kth_iteration_is_measured():
    projector = nn.Linear(32, 16)
    monitor = CollapseMonitor(projector, 3, JsonLogger(None, quiet=True))
    measured = [i for i in range(7) if _logged(monitor, projector, i) is not None]
    assert measured == [0, 3, 6]


def test_pretraining_logs_the_collapse_lines(tmp_path):
    from mec_eval.pretrain.main import pretrain

    cfg = load_pretrain_config("digits", ["optim.epochs=1", "run.max_steps_per_epoch=4", "optim.batch_size=64",
                                          "model.proj_hidden=64", "model.proj_dim=64", "model.pred_hidden=32",
                                          "run.diagnostics_every=2", "run.precision=fp32"])
    pretrain(cfg, tmp_path, quiet=True)
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    diag = [x for x in lines if x.get("event") == "diagnostics"]
    assert [x["iteration"] for x in diag] == [0, 2]
    assert all(1.0 <= x["effective_rank"] <= 64 and x["batch"] == 64 for x in diag)


def test_diagnostics_every_is_checked():
    from mec_eval.utils import UserError
    with pytest.raises(UserError, match="run.diagnostics_every"):
        load_pretrain_config("digits", ["run.diagnostics_every=-1"])

"""Two gloo processes on loopback against one process with the same global batch.

BatchNorm normalises over each process's share of the batch, and torch's SyncBatchNorm runs on
GPUs only, so these runs keep batch statistics out of the comparison: the trained task is the
linear probe with its frozen backbone (BatchNorm in eval mode) and a plain linear head; the
pre-training run has its BatchNorm layers replaced by identities. Everything else that depends
on the split is exercised: the sampler's per-process shares, per-sample augmentation seeds, DDP's
gradient averaging, MEC's all-gathered batch, and the gathered evaluation. Tolerance: float32
reductions in another order (atol 1e-5 on the weights); accuracy equal.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mec_eval.checkpoints import load_encoder
from mec_eval.config import EvalDataConfig, EvalRunConfig, load_pretrain_config
from mec_eval.metrics.classification import ClassificationEvaluator
from mec_eval.objectives import build_objective
from mec_eval.pretrain import main as pretrain_main
from mec_eval.tasks.base import TaskContext
from mec_eval.tasks.configs import LinearConfig
from mec_eval.tasks.training import Classifier, fit_then_predict, linear_head, supervised_sets

PRETRAIN = ["data.augment_backend=per-sample", "data.image_size=16", "optim.epochs=1", "optim.batch_size=32",
            "optim.warmup_epochs=0", "run.max_steps_per_epoch=2", "model.proj_hidden=32", "model.proj_dim=32",
            "model.pred_hidden=16", "run.device=cpu", "run.precision=fp32"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_batchnorm(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _without_batchnorm(child)
    return module


def _probe(workdir: Path) -> tuple[dict, dict]:
    """19 iterations of 64 (full batches only) of a linear head on the frozen random tiny ResNet."""
    data = EvalDataConfig(name="digits", image_size=16)
    cfg = LinearConfig(protocol="paper", data=data, run=EvalRunConfig(device="cpu", precision="fp32"))
    cfg.optim.steps, cfg.optim.batch_size, cfg.optim.base_lr = 19, 64, 4.0
    cfg.optim.name = "sgd"
    train, test = supervised_sets(cfg.data)
    encoder = load_encoder("random:resnet_tiny")
    torch.manual_seed(0)
    head = linear_head(encoder.feature_dim, len(train.classes))
    model = Classifier(encoder.backbone, head, frozen=True)
    engine, scores, targets = fit_then_predict(model, [{"params": list(head.parameters())}], train, test,
                                               cfg.optim, cfg.data, cfg.run, workdir, TaskContext(workdir, quiet=True))
    evaluator = ClassificationEvaluator()
    evaluator.process(scores, targets)
    return {k: v.clone() for k, v in head.state_dict().items()}, {**evaluator.evaluate(), **engine.scale}


def _pretrain(out: Path) -> dict:
    build = pretrain_main.build_network
    pretrain_main.build_network = lambda cfg, objective: _without_batchnorm(build(cfg, objective))
    try:
        pretrain_main.pretrain(load_pretrain_config("digits", PRETRAIN), out, quiet=True)
    finally:
        pretrain_main.build_network = build
    return torch.load(out / "last.pt", weights_only=True)


def _worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        weights, metrics = _probe(Path(tmp) / "probe2")
        last = _pretrain(Path(tmp) / "pre2")
        if rank == 0:
            torch.save({"probe": (weights, metrics), "pretrain": last}, Path(tmp) / "two.pt")
        dist.barrier()  # tear down together (a peer mid-collective can abort otherwise)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(_free_port(), str(tmp)), nprocs=2, start_method="fork")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = {"probe": _probe(tmp / "probe1"), "pretrain": _pretrain(tmp / "pre1")}
    finally:
        torch.set_num_threads(threads)
    return one, torch.load(tmp / "two.pt", weights_only=True)


def test_two_process_linear_probe_matches_one_process(runs):
    (w1, m1), (w2, m2) = runs[0]["probe"], runs[1]["probe"]
    assert (m1["world_size"], m2["world_size"], m2["per_process_batch"]) == (1, 2, 32)
    assert m1["effective_batch"] == m2["effective_batch"] == 64 and m1["lr"] == m2["lr"] == 1.0
    for key in w1:
        assert not torch.equal(w1[key], torch.zeros_like(w1[key]))
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5)
    assert (m1["top1"], m1["top5"]) == (m2["top1"], m2["top5"])  # gathered over both shares of the test set


def test_two_process_pretraining_steps_match_one_process(runs):
    one, two = runs[0]["pretrain"], runs[1]["pretrain"]
    assert one["meta"]["iteration"] == two["meta"]["iteration"] == 2
    for part in ("backbone", "teacher"):
        for key, value in one[part].items():
            torch.testing.assert_close(two[part][key], value, rtol=0, atol=1e-5, msg=f"{part}.{key}")
    cfg = load_pretrain_config("digits", PRETRAIN)
    torch.manual_seed(cfg.run.seed)  # the initial weights, as pretrain builds them
    start = _without_batchnorm(pretrain_main.build_network(cfg, build_objective(cfg.loss))).backbone.state_dict()
    moved = max((one["backbone"][k] - v).abs().max().item() for k, v in start.items())
    assert moved > 1e-3  # the steps moved the weights 100x more than the tolerance


@pytest.mark.parametrize("flags, native", [
    ("fpu avx2 fma", False),                                  # AVX2 only (EPYC Rome): bf16 emulated
    ("fpu avx2 avx512f avx512bw avx512vl", False),            # AVX512 without bf16 (Skylake)
    ("fpu avx2 avx512f avx512_bf16", True),                   # Cooper Lake / Zen 4
    ("fpu avx2 avx512f amx_bf16 amx_tile", True),             # Sapphire Rapids
])
def test_precision_auto_takes_bf16_only_with_native_support(tmp_path, flags, native):
    from mec_eval.dist import cpu_has_bf16, resolve_precision

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_bf16(str(info)) is native
    assert resolve_precision("fp32", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) is torch.bfloat16


def test_precision_auto_matches_this_machine():
    from mec_eval.dist import cpu_has_bf16, resolve_precision

    expected = torch.bfloat16 if cpu_has_bf16() else None
    assert resolve_precision("auto", torch.device("cpu")) is expected

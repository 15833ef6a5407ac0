"""The detection tasks end to end on synthetic shapes (VOC and COCO layouts), resume, refusals, lr search."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mec_eval.checkpoints import load_encoder
from mec_eval.config import from_dict, merge, parse_overrides
from mec_eval.tasks import detection
from mec_eval.tasks.base import TaskContext
from mec_eval.tasks.detection_configs import DetectionConfig
from mec_eval.tasks.runner import run_task
from mec_eval.tasks.specs import load_task_spec
from mec_eval.utils import UserError

TINY = ["optim.iterations=4", "optim.steps=[3]", "optim.warmup_iters=2", "optim.batch_size=2", "optim.save_every=2",
        "data.shapes_train=6", "data.shapes_test=3", "data.shapes_size=64", "data.min_size_train=[64]",
        "data.min_size_test=64", "model.anchor_sizes=[16,32]", "model.rpn_pre_nms_train=200",
        "model.rpn_pre_nms_test=100", "model.rpn_post_nms_train=32", "model.rpn_post_nms_test=32",
        "model.roi_batch_per_image=16", "model.rpn_batch_per_image=32", "model.mask_dim=16", "run.device=cpu"]


def _cfg(task: str, root: Path, extra=()) -> DetectionConfig:
    spec = load_task_spec(task)
    return from_dict(DetectionConfig, merge(spec.config, parse_overrides([*TINY, f"data.root={root}", *extra])))


@pytest.mark.slow
@pytest.mark.parametrize("task,metric", [("voc07-cpu-small", "AP50"), ("coco-cpu-small", "segm_AP")])
def test_cpu_small_end_to_end_writes_a_valid_result(tmp_path, validate_result, task, metric):
    outcome = run_task(task, "random:resnet_tiny", tmp_path / "runs", [*TINY, f"data.root={tmp_path / 'data'}"],
                       quiet=True)
    result = validate_result(outcome.path)
    assert metric in result["metrics"] and 0 <= result["metrics"][metric] <= 100
    assert result["extra"]["iterations"] == 4 and result["dataset"] == "shapes-detection"
    assert result["extra"]["per_class_AP"]
    assert (outcome.path.parent / "state.pt").is_file()


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_resume_continues_at_the_saved_iteration(tmp_path, monkeypatch):
    cfg = _cfg("voc07-cpu-small", tmp_path / "data")
    encoder = load_encoder("random:resnet_tiny")
    train, _ = detection.DetectionTask(TaskContext(cache_dir=tmp_path / "cache"))._sets(cfg, "train")
    fetched = []

    class Counting(torch.utils.data.Dataset):
        def __init__(self, limit):
            self.limit = limit

        def __len__(self):
            return len(train)

        def __getitem__(self, i):
            if len(fetched) >= self.limit:
                raise _Interrupt
            fetched.append(i)
            return train[i]

    work = tmp_path / "work"
    with pytest.raises(_Interrupt):  # dies while loading iteration 2's batch, just after the save at iteration 2
        detection.train_detector(detection.build_detector(encoder, 5, cfg), Counting(4), cfg, 0.02, work, True)
    assert torch.load(work / "state.pt", weights_only=True)["iteration"] == 2
    fetched.clear()
    engine = detection.train_detector(detection.build_detector(encoder, 5, cfg), Counting(100), cfg, 0.02, work, True)
    assert len(fetched) == (4 - 2) * 2  # only iterations 2 and 3 ran again
    assert torch.load(work / "state.pt", weights_only=True)["iteration"] == 4 == engine.plan.total_iters


def test_non_resnet_encoder_is_refused(tmp_path):
    cfg = _cfg("voc07-cpu-small", tmp_path)
    encoder = load_encoder("random:resnet_tiny")
    encoder.backbone, encoder.arch = nn.Sequential(nn.Conv2d(3, 8, 16, 16)), "vit_tiny"
    with pytest.raises(UserError, match="ResNet") as err:
        detection.build_detector(encoder, 5, cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override", ["optim.steps=[500]", "data.train_split=trainval07", "model.norm=gn",
                                      "optim.warmup_factor=2", "lr_search.base_lrs=[]", "data.min_size_train=[4]"])
def test_bad_config_values_exit_2(tmp_path, override):
    proc = subprocess.run([sys.executable, "-m", "mec_eval", "run", "--task", "voc07-cpu-small", "--ckpt",
                           "random:resnet_tiny", "--out", str(tmp_path), override], check=False,
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def test_held_out_split_is_seeded_and_disjoint():
    fit, held = detection.held_out_split(20, 0.25, seed=3)
    assert len(held) == 5 and not set(fit) & set(held) and sorted(fit + held) == list(range(20))
    assert detection.held_out_split(20, 0.25, seed=3) == (fit, held)
    assert detection.held_out_split(20, 0.25, seed=4) != (fit, held)


@pytest.mark.slow
def test_lr_search_selects_on_held_out_training_images(tmp_path, monkeypatch):
    cfg = _cfg("voc07-cpu-small", tmp_path / "data", ["lr_search.enabled=true", "lr_search.base_lrs=[0.001,0.02]",
                                                      "lr_search.held_out_fraction=0.34", "data.shapes_train=6",
                                                      "optim.iterations=2", "optim.steps=[1]", "optim.warmup_iters=1",
                                                      "data.shapes_test=2"])  # 3 trainings: 2 iterations each
    reads, real = [], detection.load_split
    task = detection.DetectionTask(TaskContext(cache_dir=tmp_path / "runs" / ".cache" / "features", quiet=True))
    selection = list((tmp_path / "runs" / ".cache" / "lr-search").glob("*/selection.json"))
    assert not selection

    def recording(cfg_, which, transform):
        done = list((tmp_path / "runs" / ".cache" / "lr-search").glob("*/selection.json"))
        reads.append((which, bool(done)))
        return real(cfg_, which, transform)

    monkeypatch.setattr(detection, "load_split", recording)
    result = task.run(load_encoder("random:resnet_tiny"), cfg, tmp_path / "work")
    assert ("test", False) not in reads  # the test split is read only once the lr is chosen
    assert ("test", True) in reads and ("train", False) in reads
    search = result.extra["lr_search"]
    assert set(search["scores"]) == {"0.001", "0.02"} and search["base_lr"] in (0.001, 0.02)
    assert result.scale["base_lr"] == search["base_lr"] and "held-out training images" in search["selected_by"]
    chosen = json.loads(next((tmp_path / "runs" / ".cache" / "lr-search").glob("*/selection.json")).read_text())
    assert chosen["base_lr"] == search["base_lr"]


def test_trials_expand_to_seeds(tmp_path):
    cfg = _cfg("voc07-cpu-small", tmp_path, ["run.trials=3", "run.seed=7"])
    assert detection.DetectionTask.expand(cfg) == [[f"run.seed={s}", "run.trials=1"] for s in (7, 8, 9)]
    assert detection.DetectionTask.expand(_cfg("voc07-cpu-small", tmp_path)) == [[]]


def test_detector_initialisation_depends_on_run_seed_only_and_leaves_the_global_rng_alone():
    encoder = load_encoder("random:resnet_tiny")
    cfg, other = _cfg("voc07-cpu-small", Path("unused")), _cfg("voc07-cpu-small", Path("unused"), ["run.seed=1"])
    torch.manual_seed(123)
    first = detection.build_detector(encoder, 5, cfg).state_dict()
    after_first = torch.rand(3)
    torch.manual_seed(999)  # another global RNG state, as another process or an earlier draw would leave it
    second = detection.build_detector(encoder, 5, cfg).state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after_first)  # building drew nothing from the caller's RNG
    third = detection.build_detector(encoder, 5, other).state_dict()
    head = "roi_heads.box_predictor.cls_score.weight"
    assert head in first and not torch.equal(first[head], third[head])  # each trial seed: its own heads
    backbone = "backbone.layer1.0.conv1.weight"
    assert backbone in first and torch.equal(first[backbone], third[backbone])  # the checkpoint's weights


def test_syncbn_converts_every_norm_of_the_detector_on_gpus():
    from mec_eval.training.distributed import maybe_sync_batchnorm

    model = detection.build_detector(load_encoder("random:resnet_tiny"), 5, _cfg("voc07-cpu-small", Path("unused")))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn == 13  # stem 1 + 4 blocks x 2 + the downsamples of layer2..4 (res5 = layer4) + MoCo's extra norm
    converted, note = maybe_sync_batchnorm(model, True, True, torch.device("cuda"))  # conversion needs no GPU
    assert note == "SyncBatchNorm across processes" and converted is model
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == n_bn
    assert isinstance(model.roi_heads.res5.norm, nn.SyncBatchNorm)
    _same, note = maybe_sync_batchnorm(model, True, True, torch.device("cpu"))
    assert "needs GPUs" in note


@pytest.mark.slow
def test_two_gloo_processes_train_with_a_bn_note_and_one_result(tmp_path, validate_result):
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "mec_eval", "run", "--task", "voc07-cpu-small", "--ckpt",
           "random:resnet_tiny", "--out", str(out), *TINY, "optim.batch_size=4", "model.norm=syncbn",
           f"data.root={tmp_path / 'data'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 processes x 1 thread on the 2 cores
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("per-process BatchNorm: torch's SyncBatchNorm needs GPUs, this run is on CPU") == 1
    (result,) = out.glob("voc07-cpu-small/*/*/result.json")
    record = validate_result(result)
    assert record["scale"]["world_size"] == 2 and record["scale"]["effective_batch"] == 4

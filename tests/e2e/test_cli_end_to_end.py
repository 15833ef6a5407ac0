"""The CLI end to end on embedded data: pretrain -> run -> report, skip/resume, and user errors."""
from __future__ import annotations

import json

import pytest
import torch

from mec_eval.cli import main
from mec_eval.utils import sha256_file

TINY = ["data.name=digits", "optim.epochs=2", "optim.batch_size=32", "run.max_steps_per_epoch=2",
        "model.proj_hidden=64", "model.proj_dim=64", "model.pred_hidden=16", "--quiet"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "mec"
    assert main(["pretrain", "--config", "shapes", "--out", str(out), *TINY]) == 0
    return out


def test_pretrain_writes_canonical_checkpoints_and_resume_is_a_no_op(pretrained, capsys):
    names = sorted(p.name for p in pretrained.glob("*.pt"))
    assert names == ["checkpoint_0001.pt", "checkpoint_0002.pt", "last.pt"]
    ckpt = torch.load(pretrained / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["format"] == "mec-eval/1" and ckpt["arch"] == "resnet_tiny" and ckpt["meta"]["epoch"] == 2
    assert ckpt["meta"]["method"] == "mec" and set(ckpt["heads"]) == {"projector", "predictor"}
    assert "resume" not in torch.load(pretrained / "checkpoint_0002.pt", weights_only=True)["meta"]
    log = [json.loads(line) for line in (pretrained / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r.get("event") == "epoch"] == [1, 2]
    before = sha256_file(pretrained / "last.pt")
    assert main(["pretrain", "--config", "shapes", "--out", str(pretrained), *TINY]) == 0
    assert sha256_file(pretrained / "last.pt") == before  # finished: nothing retrained


def test_resume_with_another_config_is_refused(pretrained, capsys):
    code = main(["pretrain", "--config", "shapes", "--out", str(pretrained), *TINY, "loss.order=2"])
    assert code == 2
    assert "loss.order" in capsys.readouterr().err


def test_run_writes_valid_result_then_skips(pretrained, tmp_path, capsys, validate_result):
    runs = tmp_path / "runs"
    args = ["run", "--task", "knn", "--ckpt", str(pretrained / "last.pt"), "--out", str(runs), "data.name=digits", "--quiet"]
    assert main(args) == 0
    path = capsys.readouterr().out.strip()
    result = validate_result(path)
    assert result["task"] == "knn" and result["dataset"] == "digits" and result["protocol"] == "paper"
    assert result["checkpoint"]["layout"] == "mec-eval" and result["checkpoint"]["name"] == "mec-last"
    assert result["checkpoint"]["sha256"] == sha256_file(pretrained / "last.pt")
    assert 10.0 < result["metrics"]["top1"] <= 100.0 and result["metrics"]["top5"] >= result["metrics"]["top1"]
    stamp = sha256_file(path)
    assert main(args) == 0 and capsys.readouterr().out.strip() == path
    assert sha256_file(path) == stamp  # skipped, not rewritten
    assert main([*args, "--force"]) == 0
    capsys.readouterr()

    assert main(["run", "--task", "linear-fast", "--ckpt", "random:resnet_tiny", "--out", str(runs),
                 "data.name=digits", "--quiet"]) == 0
    linear = validate_result(capsys.readouterr().out.strip())
    assert linear["protocol"] == "fast" and linear["checkpoint"]["name"] == "random-resnet_tiny"

    report = tmp_path / "report.html"
    assert main(["report", "--runs", str(runs), "--out", str(report)]) == 0
    html = report.read_text()
    assert "mec-last" in html and "random-resnet_tiny" in html and "linear-fast" in html and "<script" not in html


@pytest.mark.parametrize("argv,needle", [
    (["pretrain", "--config", "shapes", "optim.epoch=3"], "did you mean optim.epochs"),
    (["pretrain", "--config", "no-such-config"], "no config named"),
    (["run", "--task", "knnn", "--ckpt", "random:resnet_tiny"], "did you mean knn"),
    (["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "data.name=imagenet", "data.root=/nonexistent/x"], "train/"),
    (["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "data.name=imagenet"], "data.root"),
    (["run", "--task", "knn", "--ckpt", "/nonexistent/ckpt.pt"], "ckpt.pt"),
    (["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "knn.k=0"], "knn.k"),
    (["list", "nothing"], "invalid choice"),
])
def test_user_errors_exit_2_with_one_line(argv, needle, tmp_path, capsys):
    if argv[0] == "run":
        argv = [*argv, "--out", str(tmp_path / "runs"), "--quiet"]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err and len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert not list((tmp_path / "runs").glob("*/*/*"))  # no run folder for a failed start


def test_truncated_and_foreign_checkpoints(tmp_path, capsys, pretrained):
    truncated = tmp_path / "cut.pt"
    data = (pretrained / "last.pt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    assert main(["run", "--task", "knn", "--ckpt", str(truncated), "--out", str(tmp_path / "r")]) == 2
    assert "cut.pt" in capsys.readouterr().err
    foreign = tmp_path / "foreign.pt"
    state = torch.load(pretrained / "last.pt", weights_only=True)["backbone"]
    state = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    state["layer9.0.conv1.weight"] = torch.zeros(3)
    torch.save(state, foreign)
    assert main(["run", "--task", "knn", "--ckpt", str(foreign), "--out", str(tmp_path / "r"), "model.arch=x"]) == 2
    assert main(["convert", "--ckpt", str(foreign), "--to", "torchvision", "--out", str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert "layer4" in err or "layer9" in err
    assert not (tmp_path / "o.pth").exists()


def test_non_finite_loss_names_the_hyper_parameters(tmp_path, capsys):
    out = tmp_path / "diverge"
    code = main(["pretrain", "--config", "shapes", "--out", str(out), *TINY, "loss.eps_d2=1e-12"])
    err = capsys.readouterr().err
    assert code == 2 and "loss.eps_d2" in err and "loss.order" in err and "non-finite" in err
    # Only whole epochs that finished with a finite loss are on disk; the failing epoch wrote nothing.
    saved = sorted(out.glob("checkpoint_*.pt"))
    assert len(saved) < 2
    for path in saved + ([out / "last.pt"] if saved else []):
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["meta"]["epoch"] == len(saved)
        assert all(torch.isfinite(t).all() for t in ckpt["backbone"].values() if t.is_floating_point())


def test_list_commands(capsys):
    for what in ("tasks", "configs", "datasets", "objectives", "archs", "checkpoints"):
        assert main(["list", what]) == 0
    out = capsys.readouterr().out
    for name in ("knn", "linear-fast", "imagenet-800ep", "shapes", "digits", "mec", "barlow_twins", "resnet50", "mocov2"):
        assert name in out


@pytest.mark.parametrize("dataset", ["cifar10", "imagenet"])
def test_pretrain_on_disk_sets_with_per_sample_augmentation(dataset, tmp_path):
    from mec_eval.data.fixtures import write_cifar_fixture, write_imagenet_fixture

    if dataset == "cifar10":
        root = write_cifar_fixture(tmp_path / "data", kind="cifar10", n_train=40, n_test=10)
    else:
        root = write_imagenet_fixture(tmp_path / "data", n_classes=3, n_train=12, n_val=2, image_size=40)
    out = tmp_path / "pt"
    code = main(["pretrain", "--config", "cifar10", "--out", str(out), f"data.name={dataset}", f"data.root={root}",
                 "data.num_workers=0", "data.image_size=32", "model.arch=resnet_tiny", "optim.epochs=1",
                 "optim.batch_size=8", "run.max_steps_per_epoch=2", "model.proj_hidden=32", "model.proj_dim=32",
                 "model.pred_hidden=8", "--quiet"])
    assert code == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["event"] == "start" and log[-1]["event"] == "epoch" and log[-1]["steps"] == 2
    assert torch.load(out / "last.pt", weights_only=True)["meta"]["config"]["data"]["augment"] == "cifar"


def test_overrides_may_follow_options(capsys):
    from mec_eval.cli import build_parser, main as cli_main

    assert cli_main(["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--quiet", "knn.kk=3"]) == 2
    assert "knn.kk" in capsys.readouterr().err  # reached the config, not argparse
    assert cli_main(["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert build_parser().prog == "mec-eval"

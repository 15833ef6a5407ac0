"""Issue-3 protocols end to end on embedded data and dataset fixtures, through the CLI where it matters."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mec_eval.checkpoints import load_encoder
from mec_eval.cli import main
from mec_eval.config import EvalDataConfig, EvalRunConfig
from mec_eval.data import TRANSFER_DATASETS, build_dataset, dataset_spec
from mec_eval.data.fixtures import write_imagenet_fixture
from mec_eval.data.subsets import holdout_split
from mec_eval.data.transfer_fixtures import write_all_transfer_fixtures
from mec_eval.tasks import features as features_module
from mec_eval.tasks import list_task_specs, run_task, run_task_all
from mec_eval.tasks.features import cached_features
from mec_eval.tasks.semi import labelled_subset
from mec_eval.utils import UserError

SHARED_SUBSETS = Path(os.environ["MEC_EVAL_SHARED"]) / "data" / "imagenet_subsets"  # set by conftest.py
CKPT = "random:resnet_tiny"


def _results(root: Path, task: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / task).glob("*/*/result.json"))]


def test_every_task_yaml_cites_a_source_and_lists(capsys):
    specs = {s.name: s for s in list_task_specs()}
    for name in ("linear", "linear-fast", "semi-1pct", "semi-10pct", "semi-1pct-mec", "semi-10pct-mec",
                 "transfer-linear", "transfer-finetune", "transfer-finetune-fast"):
        assert specs[name].source and specs[name].description, name
    assert specs["linear-fast"].config["protocol"] == "fast" and specs["semi-1pct-mec"].config["protocol"] == "paper-mec"
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "transfer-finetune" in out and "main_lincls.py" in out and "evaluate.py" in out


def test_feature_extraction_resumes_after_a_kill(tmp_path, monkeypatch):
    encoder = load_encoder(f"{CKPT}@1")
    data, run = EvalDataConfig(name="digits", batch_size=32), EvalRunConfig(precision="fp32")
    whole = cached_features(encoder, data, run, "test", tmp_path / "a", quiet=True)
    monkeypatch.setattr(features_module, "FLUSH_EVERY", 2)
    real = features_module.iterate_features
    seen = []

    def dies_after_five_batches(*args, **kwargs):
        for batch in real(*args, **kwargs):
            seen.append(len(batch[0]))
            if len(seen) == 6:
                raise KeyboardInterrupt  # killed while batch 6 is being written
            yield batch

    monkeypatch.setattr(features_module, "iterate_features", dies_after_five_batches)
    with pytest.raises(KeyboardInterrupt):
        cached_features(encoder, data, run, "test", tmp_path / "b", quiet=True)
    folder = next((tmp_path / "b").iterdir())
    assert json.loads((folder / "progress.json").read_text())["rows"] == 4 * 32 and not (folder / "meta.json").exists()
    monkeypatch.setattr(features_module, "iterate_features", real)
    resumed = cached_features(encoder, data, run, "test", tmp_path / "b", quiet=True)
    np.testing.assert_array_equal(resumed.features, whole.features)
    np.testing.assert_array_equal(resumed.targets, whole.targets)
    assert isinstance(resumed.features, np.memmap)


def test_a_cache_hit_does_not_list_the_dataset_again(tmp_path, monkeypatch):
    encoder = load_encoder(CKPT)
    data, run = EvalDataConfig(name="digits", batch_size=256), EvalRunConfig(precision="fp32")
    first = cached_features(encoder, data, run, "test", tmp_path, quiet=True)

    def no_listing(*args, **kwargs):
        raise AssertionError("the dataset was built for a cached split")

    monkeypatch.setattr(features_module, "build_dataset", no_listing)
    again = cached_features(encoder, data, run, "test", tmp_path, quiet=True)
    assert again.classes == first.classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(again.features, first.features)


def test_semi_subset_rules(tmp_path):
    root = write_imagenet_fixture(tmp_path / "in", n_classes=2, n_train=3, n_val=1)
    train = build_dataset("imagenet", root, "train")
    with pytest.raises(UserError, match="data.subset_file=PATH"):
        labelled_subset(train, EvalDataConfig(name="imagenet", root=str(root), percent=1))
    listed = tmp_path / "mine.txt"
    listed.write_text("n01440764_10027.JPEG\nn01443537_10026.JPEG\n")
    indices, source = labelled_subset(train, EvalDataConfig(name="imagenet", root=str(root), subset_file=str(listed), percent=1))
    assert [Path(train.samples[i][0]).name for i in indices] == ["n01440764_10027.JPEG", "n01443537_10026.JPEG"]
    assert "not an official split" in source
    listed.write_text("n01440764_99999.JPEG\n")
    with pytest.raises(UserError, match="n01440764_99999.JPEG"):
        labelled_subset(train, EvalDataConfig(name="imagenet", root=str(root), subset_file=str(listed)))
    digits = build_dataset("digits", None, "train")
    indices, source = labelled_subset(digits, EvalDataConfig(name="digits", percent=10))
    counts = np.bincount(np.asarray(digits.targets)[indices])
    assert counts.sum() == len(indices) and counts.min() >= 12 and "seed 0" in source


def test_official_split_of_the_wrong_size_is_refused(tmp_path):
    path = SHARED_SUBSETS / "10percent.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present (shared/ must sit beside the checkout)")
    root = write_imagenet_fixture(tmp_path / "in", n_classes=1, n_train=1, n_val=1)
    train = build_dataset("imagenet", root, "train")
    with pytest.raises(UserError, match="official 10percent.txt but this task uses 1 %"):
        labelled_subset(train, EvalDataConfig(name="imagenet", root=str(root), subset_file=str(path), percent=1))


def test_linear_linear_fast_and_semi_on_digits(tmp_path, validate_result):
    runs = tmp_path / "runs"
    run_task("linear", CKPT, runs, ["data.name=digits", "optim.epochs=2", "optim.batch_size=256"], quiet=True)
    run_task("linear-fast", CKPT, runs, ["data.name=digits", "linear.wd_grid=[0.001,0.1]"], quiet=True)
    run_task("semi-1pct", CKPT, runs, ["data.name=digits", "optim.epochs=2"], quiet=True)
    (linear,), (fast,), (semi,) = (_results(runs, t) for t in ("linear", "linear-fast", "semi-1pct"))
    for result in (linear, fast, semi):
        validate_result(result)
        assert 0 <= result["metrics"]["top1"] <= result["metrics"]["top5"] <= 100
    assert linear["protocol"] == "paper" and fast["protocol"] == "fast"
    assert linear["extra"]["iterations"] == 2 * 5 and linear["extra"]["lr"] == pytest.approx(0.03)
    assert fast["extra"]["selected_wd"] in (0.001, 0.1)
    assert semi["extra"]["labelled_images"] == 10 and semi["extra"]["head_lr"] == 0.5  # 1 % of ~126 per class -> 1 each
    assert fast["metrics"]["top1"] > 50  # random conv features of digits are linearly informative
    # A re-run skips (result.json exists); the probe kept its resumable state.
    assert run_task("linear", CKPT, runs, ["data.name=digits", "optim.epochs=2", "optim.batch_size=256"], quiet=True).skipped
    assert (Path(next((runs / "linear").glob("*/*/state.pt"))).is_file())


@pytest.fixture(scope="module")
def transfer_root(tmp_path_factory):
    parent = tmp_path_factory.mktemp("transfer")
    write_all_transfer_fixtures(parent, n_classes=2, per_class=5, image_size=24)
    return parent


def test_transfer_linear_all_eleven_from_the_cli(transfer_root, tmp_path, validate_result, capsys):
    runs = tmp_path / "runs"
    code = main(["run", "--task", "transfer-linear", "--ckpt", CKPT, "--out", str(runs), "--quiet",
                 f"data.root={transfer_root}", "data.image_size=32", "transfer.wd_count=3", "transfer.n_jobs=1"])
    assert code == 0
    assert len(capsys.readouterr().out.split()) == 11
    results = {r["dataset"]: r for r in _results(runs, "transfer-linear")}
    assert sorted(results) == sorted(TRANSFER_DATASETS)
    for name, result in results.items():
        validate_result(result)
        metric = dataset_spec(name).metric
        assert result["primary"] == metric and 0 <= result["metrics"][metric] <= 100
        assert result["extra"]["selected_wd"] in np.logspace(-6, 5, 3)
    assert results["flowers102"]["extra"]["validation"] == "official val split"
    n = results["food101"]["extra"]["n_train"] + results["food101"]["extra"]["n_val"]
    assert results["food101"]["extra"]["n_val"] == len(holdout_split(n)[1])
    assert "seeded 30 per class" in results["caltech101"]["extra"]["split_source"]
    assert results["voc2007"]["primary"] == "voc07_map"


def test_transfer_finetune_grid_resumes_point_by_point(tmp_path, validate_result):
    runs = tmp_path / "runs"
    overrides = ["data.name=digits", "optim.steps=3", "optim.batch_size=16", "grid.lrs=[0.01,0.001]",
                 "grid.wd_times_lr=[0.0]"]
    first = run_task("transfer-finetune-fast", CKPT, runs, overrides, quiet=True)
    result = validate_result(first.path)
    assert result["protocol"] == "fast" and len(result["extra"]["grid"]) == 2
    assert result["extra"]["selected_lr"] in (0.01, 0.001)
    points = sorted(first.path.parent.glob("grid/*/val.json"))
    stamps = [p.stat().st_mtime_ns for p in points]
    first.path.unlink()  # as if the job died after the search, before the final run finished
    again = run_task("transfer-finetune-fast", CKPT, runs, overrides, quiet=True)
    assert [p.stat().st_mtime_ns for p in points] == stamps  # no grid point was trained again
    assert json.loads(again.path.read_text())["metrics"] == result["metrics"]


def test_data_name_all_is_only_for_transfer_tasks(tmp_path, capsys):
    code = main(["run", "--task", "linear-fast", "--ckpt", CKPT, "--out", str(tmp_path), "data.name=all", "--quiet"])
    assert code == 2 and "transfer tasks" in capsys.readouterr().err
    with pytest.raises(UserError, match="unknown split"):
        build_dataset("flowers102", None, "trainval")


def test_run_task_all_expands_to_one_run_per_dataset(transfer_root, tmp_path):
    outcomes = run_task_all("transfer-linear", CKPT, tmp_path, [f"data.root={transfer_root}", "data.image_size=24",
                                                                "transfer.wd_count=1", "transfer.n_jobs=1"], quiet=True)
    assert [o.result["dataset"] for o in outcomes] == list(TRANSFER_DATASETS)
    assert all(torch.isfinite(torch.tensor(list(o.result["metrics"].values()))).all() for o in outcomes)


def test_trained_protocols_do_not_depend_on_earlier_random_draws(tmp_path):
    """The head is initialised from run.seed, not from whatever the process drew before."""
    overrides = ["data.name=digits", "optim.epochs=2", "optim.batch_size=512"]
    first = run_task("linear", CKPT, tmp_path / "a", overrides, quiet=True).result
    torch.rand(1000)  # another task in the same process (a suite) consumed random numbers
    second = run_task("linear", CKPT, tmp_path / "b", overrides, quiet=True).result
    assert first["metrics"] == second["metrics"]


def test_slurm_and_suite_expand_data_name_all_into_one_run_per_dataset():
    from mec_eval.tasks import expand_task

    runs = expand_task("transfer-finetune", ["data.root=/data", "optim.steps=10"])
    assert [r[-1] for r in runs] == [f"data.name={name}" for name in TRANSFER_DATASETS]
    assert all(r[:2] == ["data.root=/data", "optim.steps=10"] for r in runs)
    assert expand_task("linear-fast", ["data.name=digits"]) == [["data.name=digits"]]


def test_settings_that_do_not_change_results_keep_the_run_folder(tmp_path):
    """num_workers, the decoded-image cache and save/log intervals are left out of the run hash;
    a setting that changes the result (the seed) is not."""
    from mec_eval.tasks.runner import plan_run

    def folder(*overrides):
        return plan_run("linear", "random:resnet_tiny", tmp_path, ["data.name=digits", *overrides]).folder

    base = folder()
    assert folder("data.num_workers=3", "data.decoded_cache_mb=64", "optim.save_every=7", "optim.log_every=2") == base
    assert folder("run.seed=1") != base

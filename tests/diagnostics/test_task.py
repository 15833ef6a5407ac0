"""The ``diagnostics`` task end to end on the embedded digits (CLI, result.json, cached features)."""
from __future__ import annotations

import math

import pytest
import torch

from mec_eval.checkpoints import load_encoder
from mec_eval.cli import main
from mec_eval.config import EvalDataConfig, EvalRunConfig
from mec_eval.diagnostics import single_view_diagnostics
from mec_eval.tasks import run_task
from mec_eval.tasks.diagnostics import held_out_subset
from mec_eval.tasks.features import cached_features
from mec_eval.tasks.specs import load_task_spec
from mec_eval.vocabulary import TASKS

CKPT = "random:resnet_tiny"
FAST = ["data.name=digits", "run.precision=fp32", "diag.n=300", "diag.n_views=64"]


def test_diagnostics_run_writes_every_metric_with_its_settings(tmp_path, validate_result, capsys):
    assert main(["run", "--task", "diagnostics", "--ckpt", CKPT, "--out", str(tmp_path), *FAST]) == 0
    (path,) = tmp_path.glob("diagnostics/*/*/result.json")
    result = validate_result(path)
    assert set(result["metrics"]) == set(TASKS["diagnostics"].metrics)
    assert all(math.isfinite(v) for v in result["metrics"].values())
    extra = result["extra"]
    assert (extra["n"], extra["n_views"], extra["d"], extra["eps_d2"], extra["mu"]) == (300, 64, 256, 0.06, 1.0)
    assert extra["entropy_normaliser"] == "log d" and extra["image_size"] == 32
    assert "alignment_centred" in result["lower_is_better_metrics"]
    m = result["metrics"]
    assert m["entropy_h1_norm"] == pytest.approx(m["entropy_h1"] / math.log(256))
    assert m["effective_rank"] == pytest.approx(math.exp(m["entropy_h1"]))
    assert m["umae_uniformity"] == pytest.approx(math.exp(-m["entropy_h2"]))
    assert 0 <= m["mutual_information"] + 1e-9 and 0 <= m["mutual_information_centred"] + 1e-9


def test_single_view_values_are_those_of_the_cached_features(tmp_path):
    outcome = run_task("diagnostics", CKPT, tmp_path, FAST, quiet=True)
    encoder = load_encoder(CKPT)
    cache = tmp_path / ".cache" / "features"
    test = cached_features(encoder, EvalDataConfig(name="digits"), EvalRunConfig(precision="fp32"), "test", cache)
    rows = held_out_subset(len(test.features), 300, 0)
    assert len(set(rows.tolist())) == 300 and rows.max() < len(test.features)
    expected = single_view_diagnostics(torch.from_numpy(test.features[rows]), 0.06, 1.0, centred=True)
    for name, value in expected.items():
        assert outcome.result["metrics"][f"{name}_centred"] == pytest.approx(value, rel=1e-9), name


def test_two_view_values_repeat_with_the_seed_and_change_with_another(tmp_path):
    first = run_task("diagnostics", CKPT, tmp_path / "a", FAST, quiet=True).result["metrics"]
    again = run_task("diagnostics", CKPT, tmp_path / "b", FAST, quiet=True).result["metrics"]
    other = run_task("diagnostics", CKPT, tmp_path / "c", [*FAST, "run.seed=1"], quiet=True).result["metrics"]
    assert first == again
    assert first["alignment_centred"] != other["alignment_centred"]


@pytest.mark.parametrize("override,message", [
    ("diag.n=1", "diag.n"), ("diag.eps_d2=0", "diag.eps_d2"), ("diag.augment=simclr", "diag.augment"),
    ("diag.mu=nan", "diag.mu"), ("diag.nn=3", "diag.n"), ("diag.n=many", "diag.n"),
])
def test_bad_settings_are_one_line_user_errors(tmp_path, capsys, override, message):
    code = main(["run", "--task", "diagnostics", "--ckpt", CKPT, "--out", str(tmp_path), "data.name=digits", override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not any(tmp_path.glob("diagnostics/*/*/result.json"))


def test_a_detection_dataset_is_refused(tmp_path, capsys):
    code = main(["run", "--task", "diagnostics", "--ckpt", CKPT, "--out", str(tmp_path), "data.name=shapes-detection"])
    assert code == 2 and "Traceback" not in capsys.readouterr().err


def test_the_task_spec_cites_its_values():
    spec = load_task_spec("diagnostics")
    assert "App. C" in spec.source and "ICML 2024" in spec.source
    assert spec.config["diag"]["eps_d2"] == 0.06 and spec.config["diag"]["mu"] == 1.0

"""The SLURM path of ``suite`` and ``pretrain`` up to the submitted job (array): a recording sbatch
stands in for the cluster (tests/launch/conftest.py), so the real submitit submission runs."""
from __future__ import annotations

import json
import os

from mec_eval.cli import main
from mec_eval.launch.records import collect_states

CKPTS = "random:resnet_tiny,random:resnet_tiny@1"
DIGITS = ["data.name=digits", "--quiet"]


def test_slurm_grid_is_one_job_array_with_records(fake_slurm, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["suite", "--ckpt", CKPTS, "--tasks", "knn", "--executor", "slurm", "--cluster", "eval-1gpu",
            "--cluster-set", "timeout_min=60", "--out", str(runs), *DIGITS]
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.split() == ["4242_0", "4242_1"]
    (script,) = fake_slurm.iterdir()
    lines = script.read_text().splitlines()
    assert {"#SBATCH --array=0-1%2", "#SBATCH --time=60", "#SBATCH --job-name=mec-grid-2runs",
            "#SBATCH --gpus-per-node=1", "#SBATCH --partition=gpu"} <= set(lines)
    states = collect_states(runs)
    assert [(s.state, s.job_id, s.task) for s in states] == [("pending", "4242_0", "knn"), ("pending", "4242_1", "knn")]
    names = {json.loads((s.folder / "job.json").read_text())["name"] for s in states}
    assert names == {"mec-knn-random-resnet_tiny", "mec-knn-random-resnet_tiny-s1"}
    assert os.readlink(states[0].folder / "job.out").startswith("../../../.submitit/4242_0/")
    assert main(argv) == 0  # queued already: nothing submitted twice
    assert capsys.readouterr().out == "" and len(list(fake_slurm.iterdir())) == 1


def test_pretrain_submits_one_multinode_job(fake_slurm, tmp_path, capsys):
    out = tmp_path / "pre"
    capsys.readouterr()
    assert main(["pretrain", "--config", "digits", "--out", str(out), "--executor", "slurm", "--cluster",
                 "multinode-4x8gpu", "optim.epochs=2", "--quiet"]) == 0
    assert capsys.readouterr().out.split() == ["4242"]
    lines = (fake_slurm / "script_0.sh").read_text().splitlines()
    assert {"#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
            "#SBATCH --exclusive=user", "#SBATCH --job-name=mec-pretrain-pre"} <= set(lines)
    job = json.loads((out / "job.json").read_text())
    assert (job["kind"], job["processes"], job["job_id"]) == ("pretrain", 32, "4242")
    assert [s.state for s in collect_states(out)] == ["pending"]

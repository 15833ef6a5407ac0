"""Cluster profiles: schema, typos, hostile values; and the sbatch scripts submitit writes from each
example profile, read line by line (``#SBATCH`` flags, srun command, environment) with a fake sbatch."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from mec_eval.launch.executors import check_executor, gpu_slot, slurm_executor, visible_gpus
from mec_eval.launch.profile import ClusterProfile, load_profile
from mec_eval.utils import UserError, resource_dir

PROFILES = ("eval-1gpu", "node-8gpu", "multinode-4x8gpu", "example")


@pytest.mark.parametrize("name", PROFILES)
def test_example_profiles_load_by_name_and_path(name):
    by_name = load_profile(name)
    assert by_name == load_profile(str(resource_dir("slurm") / f"{name}.yaml"))
    assert by_name.nodes * by_name.tasks_per_node >= 1


def test_profile_fields_of_the_layouts():
    one, node, multi = (load_profile(n) for n in PROFILES[:3])
    assert (one.nodes, one.gpus_per_node, one.tasks_per_node) == (1, 1, 1)
    assert (node.nodes, node.gpus_per_node, node.tasks_per_node) == (1, 8, 8)
    assert (multi.nodes, multi.gpus_per_node, multi.tasks_per_node) == (4, 8, 8)


@pytest.mark.parametrize("sets, needle", [
    (["gpus_per_nod=2"], "did you mean cluster.gpus_per_node"),
    (["nodes=0"], "cluster.nodes"),
    (["timeout_min=abc"], "cluster.timeout_min"),
    (["timeout_min=1e9"], "cluster.timeout_min"),
    (["partition=gpu\nsrun rm -rf ~"], "cluster.partition"),
    (["account=$x$"], "cluster.account"),
    (["qos=" + "q" * 300], "cluster.qos"),
    (["additional.output=/etc/x"], "set by mec-eval itself"),
    (["additional.Exclude=n1"], "bad sbatch flag"),
    (["additional.exclude=n1;reboot"], "cluster.additional.exclude"),
    (["additional=3"], "mapping"),
    (["setup=[1]"], "setup"),
    (["nodes"], "key=value"),
])
def test_bad_profile_values_are_one_line_user_errors(sets, needle):
    with pytest.raises(UserError) as err:
        load_profile("eval-1gpu", sets)
    assert needle.lower() in str(err.value).lower()


def test_profile_name_typo_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="did you mean eval-1gpu"):
        load_profile("eval-1gp")
    with pytest.raises(UserError, match="not found"):
        load_profile(str(tmp_path / "nope.yaml"))
    with pytest.raises(UserError, match="no cluster profile named '..'"):
        load_profile("..")
    typo = tmp_path / "typo.yaml"
    typo.write_text("partition: gpu\ngpu_per_node: 2\n")
    with pytest.raises(UserError, match=f"{typo}.*did you mean cluster.gpus_per_node"):
        load_profile(str(typo))


def test_overrides_apply_on_top_of_the_file():
    profile = load_profile("node-8gpu", ["timeout_min=60", "additional.exclude=node7", "partition=debug"])
    assert (profile.timeout_min, profile.partition, profile.additional) == (60, "debug", {"exclude": "node7"})


def test_executor_checks(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="sbatch"):
        check_executor("slurm", ClusterProfile())
    with pytest.raises(UserError, match="nodes=4"):
        check_executor("local-parallel", load_profile("multinode-4x8gpu"))
    with pytest.raises(UserError, match="kubernetes"):
        check_executor("kubernetes", ClusterProfile())


def _expected_flags(profile: ClusterProfile, name: str, folder: Path, array: int | None) -> set[str]:
    pattern = "%A_%a" if array else "%j"  # an array's elements log per element: folder and file both
    log = f"{str(folder.absolute()).replace('%j', pattern)}/{pattern}_0_log"
    flags = {"cpus-per-task": profile.cpus_per_task, "gpus-per-node": profile.gpus_per_node, "job-name": name,
             "mem": f"{profile.mem_gb}GB", "nodes": profile.nodes, "ntasks-per-node": profile.tasks_per_node,
             "open-mode": "append", "signal": f"USR2@{profile.signal_delay_s}", "time": profile.timeout_min,
             "wckey": "submitit", "output": f"{log}.out", "error": f"{log}.err", **profile.additional}
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(profile, key):
            flags[key] = getattr(profile, key)
    if array:
        flags["array"] = f"0-{array - 1}%{min(array, profile.array_parallelism)}"
    return {f"#SBATCH --{k}={shlex.quote(str(v))}" for k, v in flags.items()}


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("array", [None, 3])
def test_sbatch_script_of_each_profile(name, array, fake_slurm, tmp_path):
    profile = load_profile(name, ["account=proj42"])
    folder = tmp_path / "runs" / ".submitit" / "%j"
    executor = slurm_executor(folder, profile, "mec-knn-ckpt")
    if array:
        with executor.batch():
            jobs = [executor.submit(print, i) for i in range(array)]
        assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    else:
        assert executor.submit(print, 0).job_id == "4242"
    lines = (fake_slurm / "script_0.sh").read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    assert {line for line in lines if line.startswith("#SBATCH")} == _expected_flags(profile, "mec-knn-ckpt",
                                                                                       folder, array)
    assert "export SUBMITIT_EXECUTOR=slurm" in lines
    srun = next(line for line in lines if line.startswith("srun "))
    pattern = "%A_%a" if array else "%j"
    log = f"{str(folder.absolute()).replace('%j', pattern)}/{pattern}_%t_log"
    assert srun == (f"srun --unbuffered --output {shlex.quote(log + '.out')} --error {shlex.quote(log + '.err')} "
                    f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder.absolute()))}")
    assert lines.index("export SUBMITIT_EXECUTOR=slurm") < lines.index(srun)


def test_setup_lines_come_before_srun(fake_slurm, tmp_path):
    profile = load_profile("eval-1gpu", ["setup=[module load cuda/12.1, source ~/env/bin/activate]"])
    executor = slurm_executor(tmp_path / "s" / "%j", profile, "mec-x")
    executor.submit(print, 0)
    lines = (fake_slurm / "script_0.sh").read_text().splitlines()
    srun = next(i for i, line in enumerate(lines) if line.startswith("srun "))
    assert lines.index("module load cuda/12.1") < lines.index("source ~/env/bin/activate") < srun



def test_local_parallel_gpu_shares(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5,7")
    gpus = visible_gpus()
    assert gpus == [2, 3, 5, 7]
    assert [gpu_slot(gpus, 2, i) for i in range(2)] == [(2, 3), (5, 7)]  # disjoint halves
    assert [gpu_slot(gpus, 8, i) for i in range(5)] == [(2,), (3,), (5,), (7,), (2,)]  # more jobs than GPUs
    assert gpu_slot([], 4, 1) == ()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8d1e,GPU-77aa")
    with pytest.raises(UserError, match="non-numeric"):
        visible_gpus()

"""`suite` through submitit: the same job objects a SLURM array would run, executed by submitit's
debug executor in this process; requeue returns a DelayedSubmission of the same call."""
from __future__ import annotations

import json

import pytest
import submitit

from mec_eval.launch.slurm import SlurmProfile, TaskJob, load_profile, make_executor, submit_tasks
from mec_eval.launch.suite import parse_task_list, run_suite
from mec_eval.utils import UserError, resource_dir


def test_debug_executor_runs_each_task_once(tmp_path):
    runs = tmp_path / "runs"
    jobs = submit_tasks(["knn", "knn-200"], "random:resnet_tiny", runs, ["data.name=digits"], SlurmProfile(),
                        cluster="debug")
    paths = [job.result() for job in jobs]
    results = [json.loads(open(p).read()) for p in paths]
    assert [r["task"] for r in results] == ["knn", "knn-200"]
    assert [r["config"]["knn"]["k"] for r in results] == [20, 200]
    # A requeued job re-enters the same call and reuses the finished result.
    again = TaskJob("knn", "random:resnet_tiny", str(runs), ["data.name=digits"], force=True)
    delayed = again.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.function.force is False
    assert delayed.function() == paths[0]


def test_profile_reaches_slurm_parameters(tmp_path):
    profile = load_profile(resource_dir("slurm") / "example.yaml")
    assert profile.partition == "gpu" and profile.gpus_per_node == 1
    executor = make_executor(tmp_path, profile, cluster="debug")
    assert executor.cluster == "debug"
    with pytest.raises(UserError, match="unknown config key 'gpu'"):
        from mec_eval.config import from_dict

        from_dict(SlurmProfile, {"gpu": 2})


def test_local_suite_and_task_list(tmp_path):
    assert parse_task_list(None) == ["knn", "linear-fast"]
    with pytest.raises(UserError, match="did you mean"):
        parse_task_list("knn,linear-fats")
    paths = run_suite("random:resnet_tiny", ["knn"], tmp_path, ["data.name=digits"], quiet=True)
    assert len(paths) == 1 and paths[0].endswith("result.json")
    with pytest.raises(UserError, match="executor"):
        run_suite("random:resnet_tiny", ["knn"], tmp_path, [], executor="kubernetes")

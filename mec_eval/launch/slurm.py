"""SLURM execution through submitit: one job-array element per task, requeued on preemption.

Each job re-enters :func:`mec_eval.tasks.run_task`, which skips finished runs and resumes from the
run folder, so a requeued job needs no extra flag (DINO's ``run_with_submitit.py`` pattern).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import submitit

from mec_eval.config import from_dict, read_yaml
from mec_eval.tasks import expand_task, run_task


@dataclass
class SlurmProfile:
    """A cluster profile (``slurm/*.yaml``)."""
    partition: str = ""
    account: str = ""
    qos: str = ""
    gpus_per_node: int = 1
    cpus_per_task: int = 10
    mem_gb: int = 64
    timeout_min: int = 24 * 60
    constraint: str = ""
    additional: dict = field(default_factory=dict)  # extra #SBATCH options, e.g. {"exclude": "node1"}


def load_profile(path: str | Path) -> SlurmProfile:
    return from_dict(SlurmProfile, read_yaml(path))


class TaskJob:
    """A picklable callable submitit runs on the cluster; ``checkpoint`` requeues it."""

    def __init__(self, task: str, ckpt: str, runs_root: str, overrides: list[str], force: bool,
                 arch: str | None = None, layout: str | None = None):
        self.task, self.ckpt, self.runs_root, self.overrides, self.force = task, ckpt, runs_root, overrides, force
        self.arch, self.layout = arch, layout

    def __call__(self) -> str:
        outcome = run_task(self.task, self.ckpt, self.runs_root, self.overrides, force=self.force, quiet=True,
                           arch=self.arch, layout=self.layout)
        return str(outcome.path)

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        # On preemption/timeout: resubmit the same call; never force, so finished work is kept.
        self.force = False
        return submitit.helpers.DelayedSubmission(self)


def make_executor(folder: str | Path, profile: SlurmProfile, cluster: str | None = None) -> submitit.Executor:
    """An AutoExecutor (``cluster='local'`` or ``'debug'`` for tests) configured from a profile."""
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params = dict(timeout_min=profile.timeout_min, gpus_per_node=profile.gpus_per_node,
                  cpus_per_task=profile.cpus_per_task, mem_gb=profile.mem_gb, name="mec-eval")
    slurm = {"slurm_partition": profile.partition or None, "slurm_account": profile.account or None,
             "slurm_qos": profile.qos or None, "slurm_constraint": profile.constraint or None,
             "slurm_additional_parameters": profile.additional or None}
    if executor.cluster == "slurm":
        params.update({k: v for k, v in slurm.items() if v is not None})
    executor.update_parameters(**params)
    return executor


def submit_tasks(tasks: list[str], ckpt: str, runs_root: str | Path, overrides: list[str], profile: SlurmProfile,
                 force: bool = False, cluster: str | None = None, arch: str | None = None,
                 layout: str | None = None) -> list[submitit.Job]:
    """Submit one job per run as a job array (``data.name=all`` makes one per dataset); returns the jobs."""
    executor = make_executor(Path(runs_root) / "slurm" / "%j", profile, cluster)
    jobs = [TaskJob(t, ckpt, str(runs_root), each, force, arch, layout)
            for t in tasks for each in expand_task(t, list(overrides))]
    with executor.batch():
        submitted = [executor.submit(job) for job in jobs]
    return submitted

"""Picklable job objects, one per entry point, in DINO's ``run_with_submitit.py`` style.

submitit pickles the object, runs ``__call__`` in the job's process(es) and, when the timeout or
preemption signal arrives, calls ``checkpoint()`` and requeues what it returns. Both jobs only call
the library, which resumes from its own state in the run or output folder (``state.pt``, feature
cache, ``last.pt``), so the requeued copy needs no extra flag and redoes no finished work.
"""
from __future__ import annotations

import os
from pathlib import Path

import submitit

from mec_eval.launch.records import job_attempt
from mec_eval.utils import is_main_process_env

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _submitit_environment():
    """submitit's description of this job, or None when the object is called outside submitit."""
    try:
        return submitit.JobEnvironment()
    except RuntimeError:  # no submitit executor launched this process (``--executor local``)
        return None


def _prepare_process(threads: int | None) -> str | None:
    """Thread budget, then the process-group environment from submitit's; returns the job id.

    ``TorchDistributedEnvironment().export()`` writes MASTER_ADDR/PORT, RANK, WORLD_SIZE and
    LOCAL_RANK exactly as torchrun does; the library entry points (``run_task``, ``pretrain``) then
    join the group themselves with :func:`mec_eval.dist.init_from_env` and their ``run.device``
    (gloo for ``run.device=cpu`` even on a GPU node). CUDA_VISIBLE_DEVICES is left alone:
    ``init_from_env`` picks the GPU from LOCAL_RANK.
    """
    if threads:
        for name in _THREAD_VARIABLES:  # also read by DataLoader workers started later
            os.environ[name] = str(threads)
        import torch

        torch.set_num_threads(threads)
    env = _submitit_environment()
    if env is not None:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return env.job_id if env is not None else None


class TaskJob:
    """One evaluation run: ``run_task(task, ckpt, runs_root, overrides)`` with status records in ``folder``."""

    def __init__(self, task: str, ckpt: str, runs_root: str, overrides: list[str], folder: str, force: bool = False,
                 arch: str | None = None, layout: str | None = None, threads: int | None = None):
        self.task, self.ckpt, self.runs_root, self.overrides = task, ckpt, str(runs_root), list(overrides)
        self.folder, self.force, self.arch, self.layout, self.threads = str(folder), force, arch, layout, threads

    @property
    def name(self) -> str:
        """``mec-<task>-<checkpoint folder name>``: the job name in records, status and logs."""
        return f"mec-{self.task}-{Path(self.folder).parent.name}"

    def __call__(self) -> str:
        job_id = _prepare_process(self.threads)
        from mec_eval.tasks.runner import run_task
        from mec_eval.training.signals import Preempted

        with job_attempt(Path(self.folder), job_id, write=is_main_process_env(), resumable=(Preempted,)):
            outcome = run_task(self.task, self.ckpt, self.runs_root, self.overrides, force=self.force, quiet=True,
                               arch=self.arch, layout=self.layout)
        return str(outcome.path)

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        # A fresh object, never forced: the requeued job resumes (or reuses a result it already wrote).
        fresh = TaskJob(self.task, self.ckpt, self.runs_root, self.overrides, self.folder, force=False,
                        arch=self.arch, layout=self.layout, threads=self.threads)
        return submitit.helpers.DelayedSubmission(fresh)


class PretrainJob:
    """Pre-training ``cfg`` into ``out`` (resumes from ``out/last.pt``); one process per task of the job."""

    def __init__(self, cfg, out: str, threads: int | None = None):
        self.cfg, self.out, self.threads = cfg, str(out), threads

    @property
    def name(self) -> str:
        return f"mec-pretrain-{Path(self.out).name}"

    def __call__(self) -> str:
        job_id = _prepare_process(self.threads)
        from mec_eval.pretrain.main import pretrain
        from mec_eval.training.signals import Preempted

        with job_attempt(Path(self.out), job_id, write=is_main_process_env(), resumable=(Preempted,)):
            return str(pretrain(self.cfg, self.out, quiet=True))

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(PretrainJob(self.cfg, self.out, self.threads))

"""submitit executors from a cluster profile: ``local-parallel`` (LocalExecutor) and ``slurm`` (AutoExecutor).

``local`` runs in this process and needs no executor. ``local-parallel`` uses submitit's
LocalExecutor, which starts every submitted job at once, so :func:`run_pool` keeps at most N in
flight and gives each an equal share of the CPU threads (and of the GPUs, when there are any).
``slurm`` submits job arrays through sbatch; the profile maps one-to-one onto submitit's parameters.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import submitit

from mec_eval.launch.profile import ClusterProfile
from mec_eval.utils import UserError

EXECUTORS = ("local", "local-parallel", "slurm")


def check_executor(kind: str, profile: ClusterProfile) -> None:
    """Refuse, before anything is read or written, an executor this machine or profile cannot use."""
    if kind not in EXECUTORS:
        raise UserError(f"unknown --executor '{kind}' (choose {', '.join(EXECUTORS)})")
    if kind == "slurm" and (shutil.which("sbatch") is None or shutil.which("srun") is None):
        # Without sbatch, submitit's AutoExecutor would silently pick the local executor and report
        # process ids as "SLURM jobs"; say plainly that there is no cluster here instead.
        raise UserError("--executor slurm needs SLURM's sbatch and srun, which are not on PATH here; "
                        "run on a SLURM login node, or use --executor local or local-parallel")
    if kind == "local-parallel" and profile.nodes > 1:
        raise UserError(f"--executor local-parallel runs on this one machine, but the profile asks for "
                        f"nodes={profile.nodes}; use --executor slurm or --cluster-set nodes=1")


def slurm_parameters(profile: ClusterProfile, name: str) -> dict:
    """``AutoExecutor.update_parameters`` keywords for a profile (empty text fields stay unset)."""
    params = {"name": name, "timeout_min": profile.timeout_min, "nodes": profile.nodes,
              "tasks_per_node": profile.tasks_per_node, "gpus_per_node": profile.gpus_per_node,
              "cpus_per_task": profile.cpus_per_task, "mem_gb": profile.mem_gb,
              "slurm_signal_delay_s": profile.signal_delay_s, "slurm_array_parallelism": profile.array_parallelism}
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(profile, key):
            params[f"slurm_{key}"] = getattr(profile, key)
    if profile.additional:
        params["slurm_additional_parameters"] = dict(profile.additional)
    if profile.setup:
        params["slurm_setup"] = list(profile.setup)
    return params


def slurm_executor(folder: Path, profile: ClusterProfile, name: str) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm", slurm_max_num_timeout=profile.max_num_timeout)
    executor.update_parameters(**slurm_parameters(profile, name))
    return executor


def local_executor(folder: Path, profile: ClusterProfile) -> submitit.LocalExecutor:
    """LocalExecutor with the profile's time limit, requeue budget and processes per job."""
    executor = submitit.LocalExecutor(folder=str(folder), max_num_timeout=profile.max_num_timeout)
    executor.update_parameters(timeout_min=profile.timeout_min, signal_delay_s=profile.signal_delay_s,
                               tasks_per_node=profile.tasks_per_node)
    return executor


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def visible_gpus() -> list[int]:
    """GPU ids this process may hand out, without importing torch (CUDA_VISIBLE_DEVICES, else /dev/nvidiaN)."""
    text = os.environ.get("CUDA_VISIBLE_DEVICES")
    if text is None:
        return sorted(int(p.name[6:]) for p in Path("/dev").glob("nvidia[0-9]*") if p.name[6:].isdigit())
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isdigit() for part in ids):
        raise UserError(f"CUDA_VISIBLE_DEVICES={text[:60]!r} holds non-numeric ids; --executor local-parallel "
                        "hands out GPUs by index: set numeric ids")
    return [int(part) for part in ids]


def gpu_slot(gpus: list[int], parallel: int, index: int) -> tuple[int, ...]:
    """The GPUs of the ``index``-th concurrent job: an equal, disjoint share when there are enough."""
    if not gpus:
        return ()
    share = max(1, len(gpus) // parallel)
    start = (index * share) % len(gpus)
    return tuple(gpus[start:start + share])


def run_pool(executor: submitit.LocalExecutor, jobs: list, parallel: int, poll_s: float = 0.5,
             on_submit=None) -> list[tuple[object, submitit.Job]]:
    """Run ``jobs`` through the LocalExecutor, at most ``parallel`` at a time; returns (job, submitit job) pairs.

    Each job gets its GPU slot just before submission (CUDA_VISIBLE_DEVICES of its processes) and
    ``on_submit(job, submitted)`` is called right after, to write its record.
    """
    gpus = visible_gpus()
    waiting, running, finished = list(jobs), [], []
    free_slots = list(range(parallel))
    while waiting or running:
        while waiting and free_slots:
            slot, job = free_slots.pop(0), waiting.pop(0)
            devices = gpu_slot(gpus, parallel, slot)
            executor.update_parameters(gpus_per_node=len(devices), visible_gpus=devices)
            submitted = executor.submit(job)
            if on_submit is not None:
                on_submit(job, submitted)
            running.append((slot, job, submitted))
        done = [entry for entry in running if entry[2].done()]
        for entry in done:
            running.remove(entry)
            free_slots.append(entry[0])
            finished.append((entry[1], entry[2]))
        if not done:
            time.sleep(poll_s)
    return finished


def describe_job(submitted: submitit.Job) -> dict:
    """What a job record keeps of a submitit job: its id and its log files (task 0)."""
    return {"job_id": str(submitted.job_id), "stdout": str(submitted.paths.stdout),
            "stderr": str(submitted.paths.stderr)}

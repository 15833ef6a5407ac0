"""``mec-eval suite``: several tasks for one checkpoint, locally or on SLURM."""
from __future__ import annotations

from pathlib import Path

import shutil

from mec_eval.log import JsonLogger
from mec_eval.tasks.specs import list_task_specs, load_task_spec
from mec_eval.utils import UserError

# What `suite` runs without --tasks: the protocols available in this version.
DEFAULT_TASKS = ("knn", "linear-fast")


def parse_task_list(text: str | None) -> list[str]:
    names = [t.strip() for t in (text or ",".join(DEFAULT_TASKS)).split(",") if t.strip()]
    if not names:
        raise UserError("--tasks is empty")
    for name in names:
        load_task_spec(name)  # fails early, with close matches, on a typo
    return names


def run_suite(ckpt: str, tasks: list[str], runs_root: str | Path, overrides: list[str], executor: str = "local",
              cluster_profile: str | None = None, force: bool = False, quiet: bool = False,
              arch: str | None = None, layout: str | None = None) -> list[str]:
    """Run or submit every task; returns result paths (local) or job ids (slurm)."""
    logger = JsonLogger(None, quiet=quiet)
    if executor == "local":
        from mec_eval.tasks.runner import run_task_all

        return [str(o.path) for t in tasks for o in run_task_all(t, ckpt, runs_root, overrides, force=force, quiet=quiet,
                                                                    arch=arch, layout=layout)]
    if executor == "slurm":
        from mec_eval.launch.slurm import SlurmProfile, load_profile, submit_tasks

        if shutil.which("sbatch") is None:
            # submitit would fall back to running the jobs locally in the background and report
            # their process ids as "SLURM jobs"; say plainly that there is no cluster here instead.
            raise UserError("--executor slurm needs SLURM's sbatch, which is not on PATH here; "
                            "run on a SLURM login node, or use --executor local")
        profile = load_profile(cluster_profile) if cluster_profile else SlurmProfile()
        jobs = submit_tasks(tasks, ckpt, runs_root, overrides, profile, force=force, arch=arch, layout=layout)
        for job in jobs:
            logger.info(f"submitted SLURM job {job.job_id}")
        return [job.job_id for job in jobs]
    raise UserError(f"unknown --executor '{executor}' (choose local or slurm)")


def describe_tasks() -> list[tuple[str, str, str]]:
    return [(s.name, s.description, s.source) for s in list_task_specs()]

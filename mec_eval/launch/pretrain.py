"""``mec-eval pretrain --executor local-parallel|slurm``: pre-training as one submitit job.

The job has ``nodes x tasks_per_node`` processes; each joins the process group from submitit's
environment and runs :func:`mec_eval.pretrain.main.pretrain`, which resumes from ``OUT/last.pt``,
so a requeued job continues from the last save. submitit's files live in ``OUT/.submitit/<job id>``
and ``OUT/job.out`` / ``OUT/job.err`` link to the logs of process 0.
"""
from __future__ import annotations

from pathlib import Path

import submitit

from mec_eval.launch import executors
from mec_eval.launch.jobs import PretrainJob
from mec_eval.launch.records import FAILED_FILE, read_json, write_job_record
from mec_eval.launch.suite import SUBMITIT_DIR, Dispatch
from mec_eval.utils import UserError


def launch_pretrain(cfg, out: str | Path, how: Dispatch) -> str:
    """Submit (slurm: returns the job id) or run through the LocalExecutor (returns the path of last.pt)."""
    executors.check_executor(how.executor, how.profile)
    out = Path(out)
    job = PretrainJob(cfg, str(out))
    folder = out / SUBMITIT_DIR / "%j"
    record = {"kind": "pretrain", "name": job.name, "task": "pretrain", "checkpoint": out.name,
              "executor": how.executor, "processes": how.profile.nodes * how.profile.tasks_per_node}
    if how.executor == "slurm":
        submitted = executors.slurm_executor(folder, how.profile, job.name).submit(job)
        write_job_record(out, **record, **executors.describe_job(submitted))
        return str(submitted.job_id)
    gpus = executors.visible_gpus()
    if gpus and len(gpus) < how.profile.tasks_per_node:  # each process takes the GPU of its LOCAL_RANK
        raise UserError(f"tasks_per_node={how.profile.tasks_per_node} processes need as many GPUs, this machine "
                        f"shows {len(gpus)}; use --cluster-set tasks_per_node={len(gpus)}")
    job.threads = max(1, executors.cpu_count() // how.profile.tasks_per_node)
    executor = executors.local_executor(folder, how.profile)
    (_, submitted), = executors.run_pool(executor, [job], 1, how.poll_s,
                                          on_submit=lambda j, sub: write_job_record(out, **record,
                                                                                    **executors.describe_job(sub)))
    try:
        return str(submitted.result())
    except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError):
        failed = read_json(out / FAILED_FILE) or {}
        raise UserError(f"the pre-training job failed: {failed.get('error', 'no error record')}; "
                        f"its log is {out / 'job.err'}") from None

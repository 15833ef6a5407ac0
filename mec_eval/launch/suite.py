"""``mec-eval suite``: checkpoints x tasks as one grid, run here, in parallel here, or as a SLURM job array.

The grid is planned completely before anything is written: every (checkpoint, task, expand entry)
is resolved to its run folder with :func:`mec_eval.tasks.runner.plan_run`, so a bad checkpoint or
config fails at once. Finished runs (``result.json``) are skipped, runs already queued elsewhere are
not queued twice, and every submitted run gets a ``job.json`` record for ``mec-eval status``.
This module imports torch only inside functions: ``mec-eval list tasks`` reads it torch-free.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mec_eval.launch.profile import ClusterProfile
from mec_eval.tasks.specs import list_task_specs, load_task_spec
from mec_eval.utils import UserError, is_main_process_env

# What `suite` runs without --tasks: the protocols available in this version.
DEFAULT_TASKS = ("knn", "linear-fast")
SUBMITIT_DIR = ".submitit"  # RUNS/.submitit/<job id>/: submitit's pickles and logs, linked from each run folder


def _split(text: str, flag: str) -> list[str]:
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))  # ordered, no duplicates
    if not names:
        raise UserError(f"{flag} is empty; give comma-separated names")
    return names


def parse_task_list(text: str | None) -> list[str]:
    names = _split(text if text is not None else ",".join(DEFAULT_TASKS), "--tasks")
    for name in names:
        load_task_spec(name)  # fails early, with close matches, on a typo
    return names


def parse_checkpoint_list(text: str) -> list[str]:
    """``--ckpt A,B,...``: paths, ``random:<arch>[@seed]`` or ``manifest:<name>`` (read when the grid is planned)."""
    return _split(text, "--ckpt")


@dataclass
class Dispatch:
    """Where the grid runs: ``executor`` (local, local-parallel, slurm), its profile and parallelism."""
    executor: str = "local"
    profile: ClusterProfile = field(default_factory=ClusterProfile)
    parallel: int = 2        # concurrent jobs of local-parallel
    poll_s: float = 0.5      # how often local-parallel looks for finished jobs


@dataclass
class SuiteOutcome:
    lines: list[str]         # result paths (local executors) or job ids (slurm)
    failed: list[str]        # run folders whose job raised (local-parallel)


def plan_grid(ckpts: list[str], tasks: list[str], runs_root: str | Path, overrides: list[str], executor: str,
              force: bool = False, retry_failed: bool = False, arch: str | None = None,
              layout: str | None = None, logger=None) -> list:
    """The TaskJobs of the cross product that still need running (see the module docstring)."""
    from mec_eval.launch.jobs import TaskJob
    from mec_eval.launch.records import run_state
    from mec_eval.tasks.runner import expand_task, plan_run

    from mec_eval.checkpoints import load_encoder

    jobs, seen = [], set()
    for ckpt in ckpts:
        encoder = load_encoder(ckpt, arch=arch, layout=layout)  # read once for all its tasks
        for task in tasks:
            for each in expand_task(task, list(overrides)):
                folder = plan_run(task, ckpt, runs_root, each, arch=arch, layout=layout, encoder=encoder).folder
                if folder in seen:
                    continue
                seen.add(folder)
                state = run_state(folder).state
                skip = _skip_reason(state, executor, force, retry_failed)
                if skip:
                    if logger is not None:
                        logger.info(f"skip {task} on {ckpt}: {skip} ({folder})")
                    continue
                jobs.append(TaskJob(task, ckpt, str(runs_root), each, str(folder), force=force, arch=arch,
                                    layout=layout))
    return jobs


def _skip_reason(state: str, executor: str, force: bool, retry_failed: bool) -> str:
    if retry_failed:
        return "" if state == "failed" else f"{state}, not failed (--retry-failed)"
    if force:
        return ""
    if state == "done":
        return "finished (use --force to re-run)"
    if state in ("pending", "running") and executor != "local":
        # Another suite already queued it; queueing it twice would run it twice.
        return f"already {state} (see mec-eval status; --force queues it again)"
    return ""


def _record(job, executor: str, **job_fields) -> None:
    from mec_eval.launch.records import write_job_record

    write_job_record(Path(job.folder), kind="task", name=job.name, task=job.task,
                     checkpoint=Path(job.folder).parent.name, ckpt=job.ckpt, overrides=job.overrides,
                     executor=executor, threads=job.threads, **job_fields)


def dispatch_jobs(jobs: list, runs_root: str | Path, how: Dispatch) -> SuiteOutcome:
    """Run or submit planned TaskJobs; the records say where each one is."""
    if not jobs:
        return SuiteOutcome([], [])
    from mec_eval.launch import executors

    submitit_dir = Path(runs_root) / SUBMITIT_DIR / "%j"
    if how.executor == "local":
        lines = []
        for job in jobs:
            if is_main_process_env():  # under torchrun every process runs the grid; one keeps the records
                _record(job, "local", job_id=f"local-{os.getpid()}")
            lines.append(job())
        return SuiteOutcome(lines, [])
    if how.executor == "slurm":
        names = {job.name for job in jobs}
        name = names.pop() if len(names) == 1 else f"mec-grid-{len(jobs)}runs"
        executor = executors.slurm_executor(submitit_dir, how.profile, name)
        with executor.batch():  # one job array; array_parallelism caps how many run at once
            submitted = [executor.submit(job) for job in jobs]
        for job, sub in zip(jobs, submitted):
            _record(job, "slurm", array_name=name, **executors.describe_job(sub))
        return SuiteOutcome([sub.job_id for sub in submitted], [])
    threads = max(1, executors.cpu_count() // how.parallel)
    for job in jobs:
        job.threads = threads
    executor = executors.local_executor(submitit_dir, how.profile)
    finished = executors.run_pool(executor, jobs, how.parallel, how.poll_s,
                                  on_submit=lambda job, sub: _record(job, "local-parallel",
                                                                     **executors.describe_job(sub)))
    return _collect(finished)


def _collect(finished: list) -> SuiteOutcome:
    import submitit

    lines, failed = [], []
    for job, sub in finished:
        try:
            lines.append(sub.result())
        except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError):
            failed.append(job.folder)  # the job wrote failed.json with its error; status shows it
    return SuiteOutcome(lines, failed)


def run_suite(ckpts: list[str], tasks: list[str], runs_root: str | Path, overrides: list[str],
              how: Dispatch | None = None, force: bool = False, retry_failed: bool = False, quiet: bool = False,
              arch: str | None = None, layout: str | None = None) -> SuiteOutcome:
    """Plan the grid, then run it (local), run it N at a time (local-parallel) or submit it (slurm)."""
    from mec_eval.launch.executors import check_executor
    from mec_eval.log import JsonLogger

    how = how or Dispatch()
    check_executor(how.executor, how.profile)
    logger = JsonLogger(None, quiet=quiet or not is_main_process_env())
    jobs = plan_grid(ckpts, tasks, runs_root, overrides, how.executor, force=force, retry_failed=retry_failed,
                     arch=arch, layout=layout, logger=logger)
    logger.info(f"{len(jobs)} run(s) to {'run' if how.executor != 'slurm' else 'submit'} ({how.executor})")
    return dispatch_jobs(jobs, runs_root, how)


def describe_tasks() -> list[tuple[str, str, str]]:
    return [(s.name, s.description, s.source) for s in list_task_specs()]

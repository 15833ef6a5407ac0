"""Requeue through submitit's LocalExecutor: the job gets the timeout/preemption signal (USR2, what
SLURM sends ``signal_delay_s`` before the time limit) mid-run, ``checkpoint()`` hands submitit a
fresh job, submitit restarts it, and it finishes from its saved state without redoing finished epochs."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from mec_eval.config import load_pretrain_config
from mec_eval.launch.executors import local_executor
from mec_eval.launch.jobs import PretrainJob
from mec_eval.launch.profile import ClusterProfile
from mec_eval.launch.suite import plan_grid

# A 10-minute limit: submitit then judges any signal a timeout (not a preemption: its guaranteed
# walltime is max(0, limit - 10 min)) and counts it against max_num_timeout, the stricter path.
PROFILE = ClusterProfile(timeout_min=10, max_num_timeout=3)


def _interrupt_when(wait_for, submitted, folder: Path, condition, what: str) -> None:
    """Send the job's process USR2 once ``condition()`` holds, as submitit's local controller does at
    the time limit (``LocalJob._interrupt`` signals the controller itself, which does not forward it)."""
    wait_for(lambda: condition() or submitted.done(), what=what)
    assert not submitted.done(), f"the job finished before {what}; the test needs it mid-run"
    os.kill(json.loads((folder / "running.json").read_text())["pid"], signal.SIGUSR2)


def _submitit_log(submitted) -> str:
    return submitted.paths.stdout.read_text() + submitted.paths.stderr.read_text()


def _attempt_starts(folder: Path) -> list[float]:
    return [a["started"] for a in json.loads((folder / "running.json").read_text())["attempts"]]


def _assert_resumed(records: list[dict], attempts: list[float], epochs: int) -> None:
    """Two attempts; the second continues from the last save, redoing at most the epoch in flight."""
    assert len(attempts) == 2, attempts
    before = [r["epoch"] for r in records if r["time"] <= attempts[1]]
    after = [r["epoch"] for r in records if r["time"] > attempts[1]]
    assert before == list(range(1, len(before) + 1)) and after == sorted(set(after)), (before, after)
    assert before and after and after[0] >= before[-1], (before, after)  # resumed, not restarted
    assert sorted(set(before + after)) == list(range(1, epochs + 1))


def test_task_job_resumes_after_the_timeout_signal(tmp_path, wait_for, epoch_records):
    runs = tmp_path / "runs"
    overrides = ["data.name=digits", "data.image_size=16", "optim.epochs=4", "optim.batch_size=256"]
    (job,) = plan_grid(["random:resnet_tiny"], ["linear"], runs, overrides, "local-parallel")
    folder = Path(job.folder)
    submitted = local_executor(runs / ".submitit" / "%j", PROFILE).submit(job)
    _interrupt_when(wait_for, submitted, folder, lambda: (folder / "state.pt").is_file(), "the first save")
    result = json.loads(Path(submitted.result()).read_text())
    assert result["task"] == "linear" and result["extra"]["iterations"] == 4 * 5

    _assert_resumed(epoch_records(folder / "log.jsonl"), _attempt_starts(folder), 4)
    log = _submitit_log(submitted)
    assert "this job is timed-out" in log and "Calling checkpoint method" in log and "Requeued job" in log


def test_pretrain_job_resumes_after_the_timeout_signal(tmp_path, wait_for, epoch_records):
    out = tmp_path / "pre"
    cfg = load_pretrain_config("digits", ["optim.epochs=6", "optim.batch_size=32", "run.max_steps_per_epoch=4",
                                          "model.proj_hidden=32", "model.proj_dim=32", "model.pred_hidden=16"])
    submitted = local_executor(out / ".submitit" / "%j", PROFILE).submit(PretrainJob(cfg, str(out), threads=1))
    _interrupt_when(wait_for, submitted, out, lambda: (out / "checkpoint_0002.pt").is_file(), "checkpoint_0002.pt")
    assert Path(submitted.result()) == out / "last.pt"

    _assert_resumed(epoch_records(out / "log.jsonl"), _attempt_starts(out), 6)
    assert sorted(p.name for p in out.glob("checkpoint_*.pt")) == [f"checkpoint_{e:04d}.pt" for e in range(1, 7)]
    assert "Requeued job" in _submitit_log(submitted)

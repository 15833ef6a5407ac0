"""Job records in run folders, so ``mec-eval status`` works after the submitting shell is gone.

Small JSON files, each written atomically, tell a run's state without asking the scheduler:

- ``job.json``     written at submission (task, checkpoint, job id, executor, log paths): *pending*;
- ``running.json`` written by the job when it starts (host, pid, attempt; a requeue rewrites it): *running*;
- ``failed.json``  written by the job when it raises (the error and the last lines of its traceback): *failed*;
- ``result.json``  (the runner's) or, for pre-training, the final ``checkpoint_XXXX.pt``: *done*.

A new attempt removes ``failed.json`` first, so a retried run reads as running, not failed.
Torch-free: ``status`` and its argument errors answer without importing torch.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import yaml

from mec_eval.runs import RESULT_FILE
from mec_eval.utils import UserError, atomic_write_text

JOB_FILE, RUNNING_FILE, FAILED_FILE = "job.json", "running.json", "failed.json"
TAIL_LINES = 12  # traceback lines a failure record keeps (the error itself is the last)


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")


def read_json(path: Path) -> dict | None:
    """A record, or None when it is missing or not a JSON object (a damaged record is ignored, not fatal)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_job_record(folder: Path, **fields) -> None:
    """``job.json`` of a submitted run (and links ``job.out``/``job.err`` to submitit's log files)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / JOB_FILE, {"schema": 1, "submitted": time.time(), **fields})
    for suffix, target in (("out", fields.get("stdout")), ("err", fields.get("stderr"))):
        if target:
            # Relative, so a moved runs folder keeps its links; replaced atomically, so a resubmitted
            # run links to its new job's log, never to a half-made link.
            tmp = folder / f".job.{suffix}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(os.path.relpath(target, folder))
            os.replace(tmp, folder / f"job.{suffix}")


@contextlib.contextmanager
def job_attempt(folder: Path, job_id: str | None, write: bool = True, resumable: tuple = ()):
    """Mark ``folder`` running for the ``with`` block; on an exception write ``failed.json`` and re-raise.

    Only exceptions are failures: the requeue signal ends the process with ``SystemExit`` (the job
    resumes) and a cancel arrives as ``KeyboardInterrupt``; neither leaves a failure record, nor do
    the ``resumable`` exceptions (training stopped on SIGTERM after saving: a requeue resumes it).
    ``write=False`` (processes other than rank 0) does nothing.
    """
    if not write:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    previous = (read_json(folder / RUNNING_FILE) or {}).get("attempts")
    earlier = [a for a in previous if isinstance(a, dict) and _number(a.get("started")) is not None] \
        if isinstance(previous, list) else []  # a damaged record starts the count over
    attempts = [*earlier, {"started": time.time(), "job_id": job_id}]
    # A requeued job keeps its id, so its duration counts from its first start; a retry is a new job.
    started = min(a["started"] for a in attempts if a.get("job_id") == job_id)
    (folder / FAILED_FILE).unlink(missing_ok=True)
    write_json(folder / RUNNING_FILE, {"host": socket.gethostname(), "pid": os.getpid(), "job_id": job_id,
                                       "attempt": len(attempts), "started": started, "attempts": attempts})
    try:
        yield
    except resumable:
        raise
    except Exception as err:
        tail = traceback.format_exc().rstrip().splitlines()[-TAIL_LINES:]
        write_json(folder / FAILED_FILE, {"failed": time.time(), "job_id": job_id, "host": socket.gethostname(),
                                          "error": " ".join(f"{type(err).__name__}: {err}".split())[:500],
                                          "tail": tail})
        raise


def pretrain_target_epochs(folder: Path) -> int | None:
    """``optim.epochs`` of the pre-training in ``folder`` (its ``config.yaml``), None before it is written."""
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        return int(config["optim"]["epochs"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def final_checkpoint(folder: Path) -> Path | None:
    """The last numbered checkpoint the pre-training in ``folder`` is configured to write."""
    epochs = pretrain_target_epochs(folder)
    return None if epochs is None else folder / f"checkpoint_{epochs:04d}.pt"


@dataclass
class RunState:
    """One row of ``mec-eval status``."""
    folder: Path
    kind: str
    task: str
    checkpoint: str
    state: str          # new (no record yet), pending, running, done, failed
    duration_s: float | None
    job_id: str
    tail: list


def _done(folder: Path, kind: str) -> dict | None:
    if kind == "pretrain":
        final = final_checkpoint(folder)
        return {} if final is not None and final.is_file() else None
    return read_json(folder / RESULT_FILE)


def _pid_gone(running: dict) -> bool:
    """True when the job ran on this host and its process no longer exists (killed, rebooted)."""
    if running.get("host") != socket.gethostname() or not isinstance(running.get("pid"), int):
        return False
    try:
        os.kill(running["pid"], 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, PermissionError):  # PermissionError: another user's process reuses the pid
        return True
    return False


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _since(start, end=None) -> float | None:
    start = _number(start)
    end = time.time() if end is None else _number(end)
    return None if start is None or end is None else end - start


def run_state(folder: Path) -> RunState:
    """The state of the run in ``folder`` from its record files (see the module docstring).

    Records are plain files anyone can edit: a field of the wrong type is shown as unknown, never a crash.
    """
    job = read_json(folder / JOB_FILE) or {}
    kind = job.get("kind", "task")
    running, failed = read_json(folder / RUNNING_FILE), read_json(folder / FAILED_FILE)
    done = _done(folder, kind)
    started = (running or {}).get("started")
    row = RunState(folder, kind, str(job.get("task", "pretrain" if kind == "pretrain" else "?")),
                   str(job.get("checkpoint", "?")), "pending" if job else "new", None, str(job.get("job_id", "")),
                   [])
    if done is not None:
        checkpoint = done.get("checkpoint")
        row.state, row.task = "done", str(done.get("task", row.task))
        row.checkpoint = str(checkpoint.get("name", row.checkpoint)) if isinstance(checkpoint, dict) else row.checkpoint
        row.duration_s = _number(done.get("duration_s")) or _since(started)
    elif failed is not None:
        tail = failed.get("tail")
        row.state = "failed"
        row.tail = [str(t) for t in tail] if isinstance(tail, list) and tail else [str(failed.get("error", ""))]
        row.duration_s = _since(started, failed.get("failed"))
    elif running is not None:
        row.state, row.duration_s = "running", _since(started)
        row.job_id = str(running.get("job_id") or row.job_id)
        if _pid_gone(running):
            gone = f"process {running['pid']} on {running['host']} ended without a result or an error (killed?)"
            row.state, row.tail = "failed", [f"{gone}; --retry-failed re-runs it"]
    return row


def collect_states(runs_root: str | Path) -> list[RunState]:
    """Every run below ``runs_root`` that has a job record or a result (sorted by folder)."""
    root = Path(runs_root)
    if not root.exists():
        raise UserError(f"runs folder {root} does not exist; pass the --out folder of a suite or run")
    if not root.is_dir():
        raise UserError(f"{root} is a file, not a runs folder")
    folders = {p.parent for name in (JOB_FILE, RESULT_FILE) for p in root.rglob(name)
               if ".submitit" not in p.parts and ".cache" not in p.parts}
    return [run_state(f) for f in sorted(folders)]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _printable(text: str) -> str:
    """Records come from files anyone may write: no terminal control (escapes, bidi overrides) reaches the screen."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def format_status(rows: list[RunState], root: str | Path, tail_lines: int = 3) -> str:
    """The ``status`` table: one line per run, then the last lines of each failure, indented."""
    if not rows:
        return f"no runs under {root} (no job.json or result.json found)"
    table = [("run", "task", "checkpoint", "state", "duration", "job")]
    for row in rows:
        name = row.folder.relative_to(root).as_posix() if row.folder != Path(root) else "."
        table.append(tuple(map(_printable, (name, row.task, row.checkpoint, row.state, _duration(row.duration_s),
                                            row.job_id or "-"))))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for index, cells in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        row = rows[index - 1] if index else None
        if row is not None and row.tail:
            lines += [f"    | {_printable(line)}" for line in row.tail[-tail_lines:]]
    counts = {s: sum(r.state == s for r in rows) for s in ("done", "running", "pending", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)

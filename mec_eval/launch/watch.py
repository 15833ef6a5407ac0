"""``mec-eval suite --watch PRETRAIN_DIR --every K``: evaluate pre-training checkpoints as they appear.

As VISSL's benchmark scheduler does: every ``checkpoint_XXXX.pt`` whose epoch (from its name) is a
multiple of K, plus the last one, is evaluated on the tasks once. The pre-training has finished when
its final checkpoint exists (``checkpoint_<optim.epochs>.pt``, from its ``config.yaml``) or
``last.pt``'s ``meta.epoch`` reached ``optim.epochs``; the watcher stops once that is true and every
checkpoint seen by then is handled. Which checkpoints were handled is kept in
``RUNS/.watch/<dir>-<hash>.json`` (written after each), so a restarted watcher evaluates nothing
twice; the grid's own skip (``result.json``) covers a crash between a run and that write.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from mec_eval.launch.records import (
    FAILED_FILE,
    JOB_FILE,
    final_checkpoint,
    pretrain_target_epochs,
    read_json,
    write_json,
)
from mec_eval.launch.suite import Dispatch, SuiteOutcome, dispatch_jobs, plan_grid
from mec_eval.runs import safe_name
from mec_eval.utils import UserError

CHECKPOINT = re.compile(r"checkpoint_(\d{1,9})\.pt")
WATCH_DIR = ".watch"


def numbered_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every ``checkpoint_XXXX.pt`` in ``folder``, by epoch."""
    found = [(int(m.group(1)), p) for p in folder.glob("checkpoint_*.pt") if (m := CHECKPOINT.fullmatch(p.name))]
    return sorted(found)


class FinishedProbe:
    """Whether a pre-training folder has finished; reads ``last.pt`` only when it changed."""

    def __init__(self, folder: Path):
        self.folder, self._seen = folder, None

    def __call__(self) -> bool:
        epochs, final = pretrain_target_epochs(self.folder), final_checkpoint(self.folder)
        if epochs is None or final is None:
            return False
        if final.is_file():
            return True
        last = self.folder / "last.pt"
        stamp = last.stat().st_mtime_ns if last.is_file() else None
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        from mec_eval.checkpoints import safe_torch_load

        meta = (safe_torch_load(last) or {}).get("meta", {})
        return isinstance(meta, dict) and isinstance(meta.get("epoch"), int) and meta["epoch"] >= epochs


def _state_path(runs_root: Path, folder: Path, every: int, tasks: list[str], overrides: list[str]) -> Path:
    key = json.dumps([str(folder.resolve()), every, tasks, overrides])
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return runs_root / WATCH_DIR / f"{safe_name(folder.resolve().name)}-{digest}.json"


def check_watch_dir(folder: str | Path) -> Path:
    """``folder`` if it is a pre-training output folder (started, or submitted with a job record)."""
    folder = Path(folder)
    shown = str(folder) if len(str(folder)) <= 200 else str(folder)[:197] + "..."
    if not folder.is_dir():
        what = "is a file, not" if folder.exists() else "does not exist; expected"
        raise UserError(f"--watch {shown} {what} a pre-training output folder (the --out of mec-eval pretrain)")
    markers = ("config.yaml", "last.pt", JOB_FILE)
    if not any((folder / name).is_file() for name in markers) and not numbered_checkpoints(folder):
        raise UserError(f"--watch {shown} is not a pre-training output folder (no config.yaml, last.pt, job.json "
                        "or checkpoint_XXXX.pt); pass the --out of mec-eval pretrain")
    return folder


def watch(folder: str | Path, every: int, tasks: list[str], runs_root: str | Path, overrides: list[str],
          how: Dispatch | None = None, poll_s: float = 60.0, quiet: bool = False, arch: str | None = None,
          layout: str | None = None) -> SuiteOutcome:
    """Evaluate the checkpoints of ``folder`` as they appear until the pre-training has finished."""
    from mec_eval.launch.executors import check_executor
    from mec_eval.log import JsonLogger

    how = how or Dispatch()
    folder, runs_root = check_watch_dir(folder), Path(runs_root)
    check_executor(how.executor, how.profile)
    logger = JsonLogger(None, quiet=quiet)
    state_file = _state_path(runs_root, folder, every, tasks, overrides)
    state = read_json(state_file) or {"pretrain_dir": str(folder.resolve()), "every": every, "tasks": tasks,
                                      "overrides": overrides, "evaluated": {}}
    finished, outcome = FinishedProbe(folder), SuiteOutcome([], [])
    logger.info(f"watching {folder} (every {every} epochs and the last; state in {state_file})")
    while True:
        done = finished()  # before listing: every checkpoint written before the end is then listed
        final = pretrain_target_epochs(folder)
        for epoch, path in numbered_checkpoints(folder):
            if path.name in state["evaluated"] or not (epoch % every == 0 or epoch == final):
                continue
            jobs = plan_grid([str(path)], tasks, runs_root, overrides, how.executor, arch=arch, layout=layout,
                             logger=logger)
            logger.info(f"epoch {epoch}: {len(jobs)} run(s) for {path.name}")
            step = dispatch_jobs(jobs, runs_root, how)
            outcome.lines.extend(step.lines)
            outcome.failed.extend(step.failed)
            state["evaluated"][path.name] = {"epoch": epoch, "when": time.time(), "runs": len(jobs)}
            write_json(state_file, state)
        if done:
            return outcome
        failure = read_json(folder / FAILED_FILE)
        if failure is not None:
            raise UserError(f"the pre-training in {folder} failed ({failure.get('error', '?')}); "
                            "fix and resume it, then re-run the same --watch command to continue")
        time.sleep(poll_s)

"""Resolve a task spec, run its adapter for one checkpoint, write result.json; skip finished runs."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mec_eval.checkpoints import load_encoder
from mec_eval.config import config_hash, to_dict
from mec_eval.data import dataset_spec
from mec_eval import dist
from mec_eval.dist import resolve_device
from mec_eval.log import JsonLogger, announce, drop_announcement
from mec_eval.runs import (
    LOCKS_DIR,
    RESULT_FILE,
    build_result,
    finished_result,
    folder_lock,
    now_iso,
    remove_new_empty_dirs,
    run_dir,
    save_config,
    write_result,
)
from mec_eval.tasks.base import TaskContext
from mec_eval.tasks.registry import TASKS
from mec_eval.tasks.specs import TaskSpec, resolve_task_config


@dataclass
class RunOutcome:
    path: Path
    result: dict
    skipped: bool


def resolve_task(task: str, overrides: list[str]) -> tuple[TaskSpec, Any, Any]:
    """(spec, adapter class, typed config) for a task name and ``key=value`` overrides."""
    spec, cfg = resolve_task_config(task, overrides)
    adapter_cls = TASKS.get(spec.adapter)
    name = getattr(getattr(cfg, "data", None), "name", "all")
    if name != "all":
        dataset_spec(name)  # a typo fails here, with close matches, before any checkpoint is read
    return spec, adapter_cls, cfg


def expand_task(task: str, overrides: list[str]) -> list[list[str]]:
    """The override lists of the runs one ``(task, overrides)`` stands for: the adapter's ``expand``
    (transfer: ``data.name=all`` is the 11 datasets of MEC Table 8), one run for most tasks."""
    spec, adapter_cls, cfg = resolve_task(task, overrides)
    return [[*overrides, *extra] for extra in adapter_cls.expand(cfg)]


def run_task_all(task: str, ckpt: str, runs_root: str | Path, overrides: list[str] | None = None,
                 force: bool = False, quiet: bool = False, arch: str | None = None,
                 layout: str | None = None) -> list[RunOutcome]:
    """:func:`run_task` for every run :func:`expand_task` makes of ``task`` (one unless data.name=all)."""
    return [run_task(task, ckpt, runs_root, each, force=force, quiet=quiet, arch=arch, layout=layout)
            for each in expand_task(task, overrides or [])]


@dataclass
class RunPlan:
    """Where one (task, checkpoint, overrides) run lives, resolved without running anything."""
    spec: TaskSpec
    adapter_cls: Any
    cfg: Any
    cfg_dict: dict
    encoder: Any
    folder: Path


def plan_run(task: str, ckpt: str, runs_root: str | Path, overrides: list[str] | None = None,
             arch: str | None = None, layout: str | None = None) -> RunPlan:
    """Resolve the config and read the checkpoint to find the run folder (``RUNS/task/ckpt/hash``).

    Dispatch uses it to know a job's folder at submission time (status, skip, logs).
    """
    spec, adapter_cls, cfg = resolve_task(task, overrides or [])
    resolve_device(cfg.run.device)  # run.device=cuda without a GPU fails here, cached features or not
    encoder = load_encoder(ckpt, arch=arch, layout=layout)  # both None: read from the file
    cfg_dict = to_dict(cfg)
    ident = {"task": spec.name, "config": cfg_dict, "weights": encoder.sha256 or encoder.name}
    if arch or layout:  # the same file read another way is another run (unforced runs keep their folders)
        ident["read_as"] = {"arch": encoder.arch, "layout": encoder.layout}
    folder = run_dir(Path(runs_root), spec.name, encoder.name, config_hash(ident))
    return RunPlan(spec, adapter_cls, cfg, cfg_dict, encoder, folder)


def run_task(task: str, ckpt: str, runs_root: str | Path, overrides: list[str] | None = None,
             force: bool = False, quiet: bool = False, arch: str | None = None,
             layout: str | None = None) -> RunOutcome:
    """Evaluate checkpoint spec ``ckpt`` on ``task``; returns where result.json is and whether it was reused.

    The whole config (device included) is checked before anything is read or written, the same way
    whether or not features are cached. One process at a time works in a run folder: a second
    identical run waits for the first and then reuses its result. A run that fails on bad input
    leaves no folder behind.
    """
    plan = plan_run(task, ckpt, runs_root, overrides, arch=arch, layout=layout)
    spec, encoder, folder = plan.spec, plan.encoder, plan.folder
    runs_root = Path(runs_root)
    logger = JsonLogger(None, quiet=quiet)
    if not force and (existing := finished_result(folder)) is not None:
        logger.info(f"skip {spec.name} on {encoder.name}: finished run in {folder} (use --force to re-run)")
        return RunOutcome(folder / RESULT_FILE, existing, True)
    lock = runs_root / LOCKS_DIR / f"{folder.relative_to(runs_root).as_posix().replace('/', '--')}.lock"
    cache = runs_root / ".cache" / "features"
    with remove_new_empty_dirs(folder, cache, lock.parent), \
            folder_lock(lock, on_wait=lambda: logger.info(f"waiting for another process running {folder}")):
        if not force and (existing := finished_result(folder)) is not None:  # it finished while we waited
            logger.info(f"reuse {spec.name} on {encoder.name}: another process finished {folder}")
            return RunOutcome(folder / RESULT_FILE, existing, True)
        announce(f"run {spec.name} on {encoder.name} ({encoder.layout}) -> {folder}", quiet)
        try:
            return _run_locked(spec, plan.adapter_cls, plan.cfg, plan.cfg_dict, encoder, folder, cache, logger,
                               quiet)
        finally:
            drop_announcement()


def _run_locked(spec: TaskSpec, adapter_cls, cfg, cfg_dict: dict, encoder, folder: Path, cache: Path,
                logger: JsonLogger, quiet: bool) -> RunOutcome:
    started, t0 = now_iso(), time.perf_counter()
    device = resolve_device(cfg.run.device)
    adapter = adapter_cls(TaskContext(cache_dir=cache, quiet=quiet, device=str(device), rank=dist.rank(),
                                      world_size=dist.world_size(), logger=logger))
    # The adapter creates ``folder`` only if it keeps resumable state there.
    outcome = adapter.run(encoder, cfg, folder)
    result = build_result(
        task=spec.name, dataset=outcome.dataset, protocol=cfg.protocol,
        checkpoint=encoder.provenance(), metrics=outcome.metrics, primary=outcome.primary,
        higher_is_better=outcome.higher_is_better, config=cfg_dict, seed=cfg.run.seed, started=started,
        duration_s=time.perf_counter() - t0, lower_is_better_metrics=outcome.lower_is_better_metrics,
        extra={**({"extra": outcome.extra} if outcome.extra else {}),
               **({"scale": outcome.scale} if outcome.scale else {})} or None)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(folder, cfg_dict)
    path = write_result(folder, result)
    logger.info(f"{spec.name} {encoder.name}: " + ", ".join(f"{k}={v:.2f}" for k, v in outcome.metrics.items()))
    return RunOutcome(path, result, False)

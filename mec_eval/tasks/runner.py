"""Resolve a task spec, run its adapter for one checkpoint, write result.json; skip finished runs."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mec_eval import dist, vocabulary
from mec_eval.checkpoints import load_encoder, require_resnet
from mec_eval.config import config_hash, to_dict
from mec_eval.data import dataset_spec, require_kind
from mec_eval.dist import resolve_device
from mec_eval.log import JsonLogger, announce, drop_announcement
from mec_eval.runs import (
    LOCKS_DIR,
    RESULT_FILE,
    build_result,
    check_result,
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
    reads = vocabulary.task(spec.name).kind  # resolve_task_config checked the name
    name = getattr(getattr(cfg, "data", None), "name", "all")
    if name != "all":
        # a typo fails here, with close matches, before any checkpoint is read; so does a dataset of
        # another kind (a detection set given to a classification task)
        require_kind(dataset_spec(name), reads)
    return spec, adapter_cls, cfg


def expand_task(task: str, overrides: list[str]) -> list[list[str]]:
    """The override lists of the runs one ``(task, overrides)`` stands for: the adapter's ``expand``
    (transfer: ``data.name=all`` is the 11 datasets of MEC Table 8), one run for most tasks."""
    _spec, adapter_cls, cfg = resolve_task(task, overrides)
    return [[*overrides, *extra] for extra in adapter_cls.expand(cfg)]


def run_task_all(task: str, ckpt: str, runs_root: str | Path, overrides: list[str] | None = None,
                 force: bool = False, quiet: bool = False, arch: str | None = None,
                 layout: str | None = None) -> list[RunOutcome]:
    """:func:`run_task` for every run :func:`expand_task` makes of ``task`` (one unless data.name=all)."""
    return [run_task(task, ckpt, runs_root, each, force=force, quiet=quiet, arch=arch, layout=layout)
            for each in expand_task(task, overrides or [])]


# Settings that change how a run is carried out but not its result: they stay out of the run
# folder's hash, so changing them reuses (or resumes) the same run instead of starting another.
RESULT_NEUTRAL = {"data": ("num_workers", "decoded_cache_mb"), "optim": ("save_every", "log_every")}


def result_config(cfg_dict: dict) -> dict:
    """``cfg_dict`` without the :data:`RESULT_NEUTRAL` settings (what identifies a run's result)."""
    return {section: ({k: v for k, v in values.items() if k not in RESULT_NEUTRAL.get(section, ())}
                      if isinstance(values, dict) else values) for section, values in cfg_dict.items()}


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
             arch: str | None = None, layout: str | None = None, encoder=None) -> RunPlan:
    """Resolve the config and read the checkpoint to find the run folder (``RUNS/task/ckpt/hash``).

    Dispatch uses it to know a job's folder at submission time (status, skip, logs); a grid passes
    the ``encoder`` it already read from ``ckpt`` (with the same arch / layout) so each file is read once.
    """
    spec, adapter_cls, cfg = resolve_task(task, overrides or [])
    return _plan(spec, adapter_cls, cfg, ckpt, runs_root, arch, layout, encoder)


def _plan(spec: TaskSpec, adapter_cls, cfg, ckpt: str, runs_root: str | Path, arch: str | None,
          layout: str | None, encoder=None) -> RunPlan:
    resolve_device(cfg.run.device)  # run.device=cuda without a GPU fails here, cached features or not
    if encoder is None:
        encoder = load_encoder(ckpt, arch=arch, layout=layout)  # both None: read from the file
    if getattr(adapter_cls, "needs_resnet", False):  # before any data is generated or a folder is made
        require_resnet(encoder, spec.name)
    cfg_dict = to_dict(cfg)
    ident = {"task": spec.name, "config": result_config(cfg_dict), "weights": encoder.sha256 or encoder.name}
    if arch or layout:  # the same file read another way is another run (unforced runs keep their folders)
        ident["read_as"] = {"arch": encoder.arch, "layout": encoder.layout}
    folder = run_dir(Path(runs_root), spec.name, encoder.name, config_hash(ident))
    return RunPlan(spec, adapter_cls, cfg, cfg_dict, encoder, folder)


def _main_only(context):
    """``context`` on the main process; nothing on the others (one lock holder, one cleaner per job)."""
    return context if dist.is_main_process() else contextlib.nullcontext()


def run_task(task: str, ckpt: str, runs_root: str | Path, overrides: list[str] | None = None,
             force: bool = False, quiet: bool = False, arch: str | None = None,
             layout: str | None = None) -> RunOutcome:
    """Evaluate checkpoint spec ``ckpt`` on ``task``; returns where result.json is and whether it was reused.

    The whole config (device included) is checked before anything is read or written, the same way
    whether or not features are cached. One process at a time works in a run folder: a second
    identical run waits for the first and then reuses its result. A run that fails on bad input
    leaves no folder behind.

    Under ``torchrun`` / SLURM with N processes every process calls this: it joins the process
    group, the main process alone takes the run-folder lock, decides skip or run (the others get its
    decision), writes config.yaml and result.json and prints; every process runs the adapter and
    waits until result.json exists. A failure on any process is raised on all (``dist.run_together``).
    """
    spec, adapter_cls, cfg = resolve_task(task, overrides or [])  # the same on every process: no one waits
    dist.init_from_env(cfg.run.device)
    plan = dist.run_together(lambda: _plan(spec, adapter_cls, cfg, ckpt, runs_root, arch, layout))
    encoder, folder, runs_root = plan.encoder, plan.folder, Path(runs_root)
    quiet = quiet or not dist.is_main_process()
    logger = JsonLogger(None, quiet=quiet)
    if not force and (existing := dist.share_from_main(lambda: finished_result(folder))) is not None:
        logger.info(f"skip {spec.name} on {encoder.name}: finished run in {folder} (use --force to re-run)")
        return RunOutcome(folder / RESULT_FILE, existing, True)
    lock = runs_root / LOCKS_DIR / f"{folder.relative_to(runs_root).as_posix().replace('/', '--')}.lock"
    cache = runs_root / ".cache" / "features"
    with _main_only(remove_new_empty_dirs(folder, cache, lock.parent)), \
            _main_only(folder_lock(lock, on_wait=lambda: logger.info(f"waiting for another process running {folder}"))):
        # it may have finished while we waited for the lock
        if not force and (existing := dist.share_from_main(lambda: finished_result(folder))) is not None:
            logger.info(f"reuse {spec.name} on {encoder.name}: another process finished {folder}")
            return RunOutcome(folder / RESULT_FILE, existing, True)
        announce(f"run {spec.name} on {encoder.name} ({encoder.layout}) -> {folder}", quiet)
        try:
            return _run_locked(plan, cache, logger, quiet)
        finally:
            drop_announcement()


def _run_locked(plan: RunPlan, cache: Path, logger: JsonLogger, quiet: bool) -> RunOutcome:
    spec, cfg, encoder, folder = plan.spec, plan.cfg, plan.encoder, plan.folder
    started, t0 = now_iso(), time.perf_counter()
    device = resolve_device(cfg.run.device)  # cuda:LOCAL_RANK under NCCL
    adapter = plan.adapter_cls(TaskContext(cache_dir=cache, quiet=quiet, device=str(device), rank=dist.rank(),
                                           world_size=dist.world_size(), logger=logger))
    # The adapter creates ``folder`` only if it keeps resumable state there.
    outcome = dist.run_together(lambda: adapter.run(encoder, cfg, folder))

    def write() -> dict:
        result = build_result(
            task=spec.name, dataset=outcome.dataset, protocol=cfg.protocol,
            checkpoint=encoder.provenance(), metrics=outcome.metrics, primary=outcome.primary,
            higher_is_better=outcome.higher_is_better, config=plan.cfg_dict, seed=cfg.run.seed, started=started,
            duration_s=time.perf_counter() - t0, lower_is_better_metrics=outcome.lower_is_better_metrics,
            extra={**({"extra": outcome.extra} if outcome.extra else {}),
                   **({"scale": outcome.scale} if outcome.scale else {})} or None)
        check_result(result)  # an adapter's bad result fails before config.yaml is written, not after
        folder.mkdir(parents=True, exist_ok=True)
        save_config(folder, plan.cfg_dict)
        write_result(folder, result)
        return result

    result = dist.share_from_main(write)  # the others wait here, so no process exits before result.json exists
    logger.info(f"{spec.name} {encoder.name}: " + ", ".join(f"{k}={v:.2f}" for k, v in outcome.metrics.items()))
    return RunOutcome(folder / RESULT_FILE, result, False)

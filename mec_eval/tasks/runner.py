"""Resolve a task spec, run its adapter for one checkpoint, write result.json; skip finished runs."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mec_eval.checkpoints import load_encoder
from mec_eval.config import config_hash, find_named_yaml, from_dict, merge, parse_overrides, read_yaml, to_dict
from mec_eval.data import TRANSFER_DATASETS
from mec_eval.log import JsonLogger
from mec_eval.runs import build_result, finished_result, now_iso, run_dir, save_config, write_result
from mec_eval.tasks.registry import TASKS
from mec_eval.utils import UserError, resource_dir

_SPEC_KEYS = {"adapter", "description", "source", "config"}


@dataclass
class TaskSpec:
    """A ``tasks/<name>.yaml`` file: which adapter, what it reproduces, its default config."""
    name: str
    adapter: str
    description: str
    source: str
    config: dict


def load_task_spec(name_or_path: str) -> TaskSpec:
    path = find_named_yaml("tasks", name_or_path)
    data = read_yaml(path)
    unknown = set(data) - _SPEC_KEYS
    if unknown or "adapter" not in data:
        raise UserError(f"{path}: a task spec has keys {sorted(_SPEC_KEYS)} (adapter required); got {sorted(data)}")
    return TaskSpec(path.stem, data["adapter"], str(data.get("description", "")).strip(),
                    str(data.get("source", "")).strip(), data.get("config") or {})


def list_task_specs() -> list[TaskSpec]:
    return [load_task_spec(str(p)) for p in sorted(resource_dir("tasks").glob("*.yaml"))]


@dataclass
class RunOutcome:
    path: Path
    result: dict
    skipped: bool


def resolve_task(task: str, overrides: list[str]) -> tuple[TaskSpec, Any, Any]:
    """(spec, adapter class, typed config) for a task name and ``key=value`` overrides."""
    spec = load_task_spec(task)
    adapter_cls = TASKS.get(spec.adapter)
    cfg = from_dict(adapter_cls.Config, merge(spec.config, parse_overrides(overrides)))
    return spec, adapter_cls, cfg


def expand_task(task: str, overrides: list[str]) -> list[list[str]]:
    """The override lists of the runs one ``(task, overrides)`` stands for.

    ``data.name=all`` on a transfer task is the 11 datasets of MEC Table 8, one run (and one
    result.json) each, all read from ``data.root`` (the folder holding the extracted datasets).
    """
    _, adapter_cls, cfg = resolve_task(task, overrides)
    if getattr(getattr(cfg, "data", None), "name", None) != "all":
        return [list(overrides)]
    if not getattr(adapter_cls, "expands_all", False):
        raise UserError(f"data.name=all is for the transfer tasks; task '{task}' needs one dataset name")
    return [[*overrides, f"data.name={name}"] for name in TRANSFER_DATASETS]


def run_task_all(task: str, ckpt: str, runs_root: str | Path, overrides: list[str] | None = None,
                 force: bool = False, quiet: bool = False) -> list[RunOutcome]:
    """:func:`run_task` for every run :func:`expand_task` makes of ``task`` (one unless data.name=all)."""
    return [run_task(task, ckpt, runs_root, each, force=force, quiet=quiet)
            for each in expand_task(task, overrides or [])]


def run_task(task: str, ckpt: str, runs_root: str | Path, overrides: list[str] | None = None,
             force: bool = False, quiet: bool = False) -> RunOutcome:
    """Evaluate checkpoint spec ``ckpt`` on ``task``; returns where result.json is and whether it was reused."""
    spec, adapter_cls, cfg = resolve_task(task, overrides or [])
    encoder = load_encoder(ckpt)
    cfg_dict = to_dict(cfg)
    folder = run_dir(runs_root, spec.name, encoder.name,
                     config_hash({"task": spec.name, "config": cfg_dict, "weights": encoder.sha256 or encoder.name}))
    existing = finished_result(folder)
    logger = JsonLogger(None, quiet=quiet)
    if existing is not None and not force:
        logger.info(f"skip {spec.name} on {encoder.name}: finished run in {folder} (use --force to re-run)")
        return RunOutcome(folder / "result.json", existing, True)
    logger.info(f"run {spec.name} on {encoder.name} ({encoder.layout}) -> {folder}")
    started, t0 = now_iso(), time.perf_counter()
    adapter = adapter_cls(cache_dir=Path(runs_root) / ".cache" / "features", quiet=quiet)
    # The adapter creates ``folder`` only if it keeps resumable state there; a run that fails on bad
    # input (missing dataset, bad key) leaves no folder behind.
    outcome = adapter.run(encoder, cfg, folder)
    result = build_result(
        task=spec.name, dataset=outcome.dataset, protocol=getattr(cfg, "protocol", "paper"),
        checkpoint=encoder.provenance(), metrics=outcome.metrics, primary=outcome.primary,
        higher_is_better=outcome.higher_is_better, config=cfg_dict, seed=cfg.run.seed, started=started,
        duration_s=time.perf_counter() - t0, lower_is_better_metrics=outcome.lower_is_better_metrics,
        extra={"extra": outcome.extra} if outcome.extra else None)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(folder, cfg_dict)
    path = write_result(folder, result)
    logger.info(f"{spec.name} {encoder.name}: " + ", ".join(f"{k}={v:.2f}" for k, v in outcome.metrics.items()))
    return RunOutcome(path, result, False)

"""Task adapters: one module per downstream protocol, run through :func:`run_task`.

Names are imported on first use (PEP 562), so ``mec_eval.tasks.specs`` (YAML only) loads without
torch and ``mec-eval list tasks`` answers at once.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Result": "base", "Task": "base", "TASKS": "registry", "TaskSpec": "specs", "list_task_specs": "specs",
    "load_task_spec": "specs", "RunOutcome": "runner", "resolve_task": "runner", "run_task": "runner",
    "expand_task": "runner", "run_task_all": "runner",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mec_eval.tasks' has no attribute '{name}'")
    return getattr(importlib.import_module(f"mec_eval.tasks.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)

"""Task specs (``tasks/<name>.yaml``): which adapter, what it reproduces, its default config.

Reading a spec needs no torch, so ``mec-eval list tasks`` and a typo in a task name answer at once.
"""
from __future__ import annotations

from dataclasses import dataclass

from mec_eval.config import find_named_yaml, read_yaml
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
    if not isinstance(data["adapter"], str) or not isinstance(data.get("config") or {}, dict):
        raise UserError(f"{path}: 'adapter' must be a name (mec-eval list tasks) and 'config' a mapping")
    return TaskSpec(path.stem, data["adapter"], str(data.get("description", "")).strip(),
                    str(data.get("source", "")).strip(), data.get("config") or {})


def list_task_specs() -> list[TaskSpec]:
    return [load_task_spec(str(p)) for p in sorted(resource_dir("tasks").glob("*.yaml"))]

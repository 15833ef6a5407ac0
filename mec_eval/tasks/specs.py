"""Task specs (``tasks/<name>.yaml``): which adapter, what it reproduces, its default config.

Reading a spec needs no torch, so ``mec-eval list tasks`` and a typo in a task name answer at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import difflib
from typing import Any

from mec_eval import vocabulary
from mec_eval.config import find_named_yaml, from_dict, merge, parse_overrides, read_yaml
from mec_eval.tasks.configs import TASK_CONFIGS
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


def resolve_task_config(task: str, overrides: list[str]) -> tuple[TaskSpec, Any]:
    """(spec, validated typed config) of a task name or YAML path plus ``key=value`` overrides."""
    spec = load_task_spec(task)
    try:  # result.json names its task by the spec's name, so a spec file must be named in the vocabulary
        vocabulary.task(spec.name)
    except ValueError as err:
        raise UserError(f"task spec '{spec.name}': {err}; name the YAML file after the task it runs") from None
    if spec.adapter not in TASK_CONFIGS:
        close = difflib.get_close_matches(spec.adapter, TASK_CONFIGS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"task '{spec.name}' names unknown adapter '{spec.adapter}'{hint} "
                        f"(known: {', '.join(sorted(TASK_CONFIGS))})")
    return spec, from_dict(TASK_CONFIGS[spec.adapter], merge(spec.config, parse_overrides(overrides)))

"""Run folders, result.json and the skip/resume rules.

A run lives in ``RUNS/<task>/<checkpoint>/<config hash>/``. ``result.json`` is written last and
atomically, so its presence means the run finished; ``config.yaml`` holds the resolved config.
"""
from __future__ import annotations

import json
import platform
import re
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from mec_eval import __version__
from mec_eval.utils import UserError, atomic_write_text

RESULT_FILE = "result.json"
SCHEMA_VERSION = 1
_REQUIRED = ("task", "dataset", "protocol", "checkpoint", "metrics", "primary", "higher_is_better", "config", "seed")


def safe_name(text: str) -> str:
    """A folder-safe version of a checkpoint or task name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "unnamed"


def run_dir(runs_root: str | Path, task: str, checkpoint_name: str, cfg_hash: str) -> Path:
    return Path(runs_root) / safe_name(task) / safe_name(checkpoint_name) / cfg_hash


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_revision() -> str | None:
    """Commit of the mec-eval source checkout, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def library_versions() -> dict[str, str]:
    import torch
    import torchvision

    return {"mec_eval": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version()}


def build_result(*, task: str, dataset: str, protocol: str, checkpoint: dict, metrics: dict[str, float],
                 primary: str, higher_is_better: bool, config: dict, seed: int, started: str,
                 duration_s: float, lower_is_better_metrics: list[str] | None = None,
                 extra: dict[str, Any] | None = None) -> dict:
    """Assemble a result dict in the result.json schema (DESIGN.md, shared/schemas)."""
    if primary not in metrics:
        raise ValueError(f"primary metric '{primary}' not among {sorted(metrics)}")
    result = {
        "schema": SCHEMA_VERSION, "task": task, "dataset": dataset, "protocol": protocol,
        "checkpoint": checkpoint, "metrics": {k: float(v) for k, v in metrics.items()},
        "primary": primary, "higher_is_better": higher_is_better, "config": config, "seed": int(seed),
        "started": started, "finished": now_iso(), "duration_s": max(float(duration_s), 0.0),
        "host": socket.gethostname(), "git": git_revision(), "versions": library_versions(),
    }
    if lower_is_better_metrics:
        result["lower_is_better_metrics"] = list(lower_is_better_metrics)
    if extra:
        result.update(extra)
    return result


def write_result(folder: str | Path, result: dict) -> Path:
    """Write ``result.json`` atomically (the run's completion marker)."""
    missing = [key for key in _REQUIRED if key not in result]
    if missing:
        raise ValueError(f"result is missing {missing}")
    path = Path(folder) / RESULT_FILE
    atomic_write_text(path, json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path


def read_result(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); delete it to re-run") from None


def finished_result(folder: str | Path) -> dict | None:
    """The result of a finished run in ``folder``, or None when it has not finished."""
    path = Path(folder) / RESULT_FILE
    return read_result(path) if path.is_file() else None


def save_config(folder: str | Path, config: dict) -> Path:
    path = Path(folder) / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
    return path


def find_results(roots: list[str | Path]) -> list[Path]:
    """Every result.json below the given folders (sorted, deduplicated)."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise UserError(f"runs folder not found: {root}")
        found.update(p.resolve() for p in root.rglob(RESULT_FILE))
    return sorted(found)

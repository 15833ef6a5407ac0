"""Run folders, result.json and the skip/resume rules.

A run lives in ``RUNS/<task>/<checkpoint>/<config hash>/``. ``result.json`` is written last and
atomically, so its presence means the run finished; ``config.yaml`` holds the resolved config.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
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
LOCKS_DIR = ".locks"      # RUNS/.locks/<run>.lock while a run is in progress (removed after)
SCHEMA_VERSION = 1
_REQUIRED = ("task", "dataset", "protocol", "checkpoint", "metrics", "primary", "higher_is_better", "config", "seed")


MAX_NAME = 80  # folder-name characters kept from a checkpoint or task name (the rest is hashed)


def safe_name(text: str) -> str:
    """A folder-safe version of a checkpoint or task name that can never leave its parent folder.

    Only ``[A-Za-z0-9._+-]`` survive; runs of dots collapse to one, so ``..`` cannot appear, and a
    name may not start with a dot (no hidden or relative folders). Names longer than
    :data:`MAX_NAME` keep a prefix plus a hash of the whole text, so two long names stay apart.
    """
    text = str(text)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", text)
    name = re.sub(r"\.{2,}", ".", name).strip("._-")
    if len(name) > MAX_NAME or (name != text and len(text) > MAX_NAME):
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        name = f"{name[:MAX_NAME - 11].rstrip('._-')}-{digest}"
    return name or "unnamed"


def contained(root: str | Path, path: str | Path) -> Path:
    """``path`` if it lies inside ``root`` once resolved (symlinks followed), else a UserError.

    The last guard between a name taken from a file and a write outside the output folder.
    """
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if path_r != root_r and root_r not in path_r.parents:
        raise UserError(f"{path} resolves outside {root} (a symlink inside the runs folder?); "
                        "remove the link or choose another --out")
    return Path(path)


def run_dir(runs_root: str | Path, task: str, checkpoint_name: str, cfg_hash: str) -> Path:
    return contained(runs_root, Path(runs_root) / safe_name(task) / safe_name(checkpoint_name) / safe_name(cfg_hash))


@contextlib.contextmanager
def folder_lock(lock_file: str | Path, on_wait=None):
    """Hold an exclusive ``flock`` on ``lock_file`` for the ``with`` block; the file is removed after.

    A second process asking for the same lock waits until the first is done (``on_wait`` is called
    once when it has to wait). The kernel drops a lock when its holder dies, even by ``kill -9``, so
    a crashed run never leaves a stale lock. The holder unlinks the file on release, so a waiter
    checks after acquiring that it locked the file still at ``lock_file`` and otherwise tries again.
    """
    lock_file = Path(lock_file)
    waited = False
    while True:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # the folder was removed by a holder releasing in between
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None and not waited:
                on_wait()
            waited = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        lock_file.unlink(missing_ok=True)
        os.close(fd)
        with contextlib.suppress(OSError):
            lock_file.parent.rmdir()  # only when empty: the last lock of the folder


def _first_missing(path: Path) -> Path | None:
    """The top-most ancestor of ``path`` (or ``path`` itself) that does not exist yet."""
    missing = None
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing


@contextlib.contextmanager
def remove_new_empty_dirs(*paths: str | Path):
    """On an exception in the block, remove the folders the block created on the way to ``paths``
    and left empty (bottom-up), so a failed command leaves no empty folders behind; never touches
    a folder that existed before or that holds a file."""
    tops = {Path(p): _first_missing(Path(p)) for p in paths}
    try:
        yield
    except BaseException:
        for path, top in tops.items():
            if top is None:
                continue
            for candidate in [path, *path.parents]:
                with contextlib.suppress(OSError):
                    candidate.rmdir()
                if candidate == top:
                    break
        raise


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """``path`` if it is (or can become) a writable folder; a UserError naming it otherwise.

    Called before any work, so a run that could never save its result fails at once.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder; pass a folder path")
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, so the folder cannot be created there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable; choose another folder")
    return path


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

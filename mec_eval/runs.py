"""Run folders, result.json and the skip/resume rules.

A run lives in ``RUNS/<task>/<checkpoint>/<config hash>/``. ``result.json`` is written last and
atomically, so its presence means the run finished; ``config.yaml`` holds the resolved config.
``write_result`` refuses a result that breaks the result.json schema (shipped as package data, a
copy of ``shared/schemas/result.schema.json``) or names a task, dataset or metric outside
:mod:`mec_eval.vocabulary`.
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
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mec_eval import __version__, vocabulary
from mec_eval.utils import UserError, atomic_write_text

RESULT_FILE = "result.json"
LOCKS_DIR = ".locks"      # RUNS/.locks/<run>.lock while a run is in progress (removed after)
SCHEMA_VERSION = 1
RESULT_SCHEMA = "schemas/result.schema.json"  # package data of mec_eval


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
        try:
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        except (FileNotFoundError, FileExistsError):
            # a holder releasing removed the folder in between: after mkdir's EEXIST (pathlib then finds no
            # folder and raises FileExistsError) or before the open
            if lock_file.parent.exists() and not lock_file.parent.is_dir():
                raise
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


@cache
def _result_validator():
    """The schema's validator, built once per process (``write_result`` runs per result)."""
    import jsonschema  # deferred: runs.py loads for `--help`; jsonschema only when a result is checked

    schema = json.loads(resources.files("mec_eval").joinpath(RESULT_SCHEMA).read_text(encoding="utf-8"))
    return jsonschema.validators.validator_for(schema)(schema)


def result_schema() -> dict:
    """The result.json JSON Schema shipped with mec-eval."""
    return _result_validator().schema


def result_problems(result: dict) -> list[str]:
    """Each way ``result`` breaks the result.json schema or the vocabulary, one sentence each; [] when valid."""
    problems = []
    for error in sorted(_result_validator().iter_errors(result), key=lambda e: [str(p) for p in e.absolute_path]):
        where = ".".join(str(p) for p in error.absolute_path)
        problems.append(f"{where}: {error.message}" if where else error.message)
    if problems:  # names are only looked up in a result whose fields have the right types
        return problems
    problems = vocabulary.name_problems(result["task"], result["dataset"], list(result["metrics"]))
    if result["primary"] not in result["metrics"]:
        problems.append(f"primary metric {result['primary']!r} is not among the metrics {sorted(result['metrics'])}")
    return problems


def check_result(result: dict) -> dict:
    """``result`` if :func:`result_problems` finds nothing, else a ValueError listing every problem.

    ValueError, not UserError: a task adapter builds the result, so a result that the schema or the
    vocabulary cannot describe is a bug in mec-eval (exit 1 with a traceback), never the user's input.
    """
    problems = result_problems(result)
    if problems:
        what = f"task {result.get('task')!r} on dataset {result.get('dataset')!r}" if isinstance(result, dict) else "?"
        raise ValueError(f"refusing to write result.json of {what}: " + "; ".join(problems)
                         + " (a task adapter bug: fix its result or add the name to mec_eval/vocabulary.py)")
    return result


def write_result(folder: str | Path, result: dict) -> Path:
    """Write ``result.json`` atomically (the run's completion marker), after :func:`check_result`.

    An invalid result raises ValueError and writes nothing.
    """
    check_result(result)
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

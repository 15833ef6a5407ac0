"""Cluster profiles (``slurm/*.yaml``): one typed schema, loaded with the project's config machinery.

A profile is read with :func:`mec_eval.config.read_yaml` and built with
:func:`mec_eval.config.from_dict`, so a typo in a key is an error listing the close matches and a
value out of range names the key. ``--cluster-set key=value`` overrides use the same parser as the
task overrides (``parse_overrides``) but their own flag, so ``timeout_min=60`` can never be taken
for a task key. Everything here is torch-free: profile errors answer before torch is imported.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from mec_eval.config import checked, from_dict, merge, parse_overrides, read_yaml
from mec_eval.utils import UserError, resource_dir

# Values go into ``#SBATCH --key=value`` lines. submitit shell-quotes them, but a newline would still
# end the line and start a shell command in the script, so every text field is one printable token.
_TOKEN = r"[^\s'\"`$\\;]{0,200}"
_TOKEN_HELP = "one token without spaces, quotes, $, \\ or ; (at most 200 characters)"
_FLAG = re.compile(r"[a-z][a-z0-9_-]{0,40}")
# sbatch options that submitit sets itself (log paths, the array, the requeue signal): an
# ``additional`` entry overriding them would break logs, arrays or requeueing.
_RESERVED = {"output", "error", "array", "signal", "open-mode", "job-name", "wckey", "ntasks-per-node", "nodes",
             "time", "mem", "gpus-per-node", "cpus-per-task", "partition", "account", "qos", "constraint"}
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def _token(default: str = "") -> str:
    return checked(default, pattern=_TOKEN, pattern_help=_TOKEN_HELP)


@dataclass
class ClusterProfile:
    """Where and how big each job is (``slurm/*.yaml``); empty text fields are left to the cluster default."""
    partition: str = _token()
    account: str = _token()
    qos: str = _token()
    constraint: str = _token()        # e.g. "volta32gb" or "a100|h100"
    nodes: int = checked(1, ge=1, le=1024)
    gpus_per_node: int = checked(1, ge=0, le=64)
    tasks_per_node: int = checked(1, ge=1, le=256)  # processes per node (one per GPU for DDP)
    cpus_per_task: int = checked(10, ge=1, le=1024)
    mem_gb: int = checked(64, ge=1, le=65536)
    timeout_min: int = checked(24 * 60, ge=1, le=60 * 24 * 31)
    signal_delay_s: int = checked(120, ge=0, le=3600)  # the requeue signal comes this long before the kill
    max_num_timeout: int = checked(3, ge=0, le=1000)  # requeues after a timeout (preemptions are not counted)
    array_parallelism: int = checked(256, ge=1, le=100_000)  # array elements running at once
    additional: dict = field(default_factory=dict)  # extra #SBATCH flags, e.g. {exclude: "node[1-2]"}
    setup: list = field(default_factory=list)  # shell lines before srun, e.g. "module load cuda/12.1"

    def check_config(self, prefix: str) -> None:
        if not isinstance(self.additional, dict):
            raise UserError(f"config key '{prefix}additional' must be a mapping of sbatch flags, "
                            f"got {str(self.additional)[:60]!r}")
        for key, value in self.additional.items():
            if not isinstance(key, str) or not _FLAG.fullmatch(key):
                raise UserError(f"config key '{prefix}additional' has a bad sbatch flag name {str(key)[:60]!r} "
                                "(lower-case letters, digits, - and _)")
            if key.replace("_", "-") in _RESERVED:
                raise UserError(f"config key '{prefix}additional.{key}' is set by mec-eval itself; "
                                f"use the profile field instead of 'additional' (or drop it)")
            if isinstance(value, bool) or not isinstance(value, (str, int)) or not re.fullmatch(_TOKEN, str(value)):
                raise UserError(f"config key '{prefix}additional.{key}' must be {_TOKEN_HELP}, got {str(value)[:60]!r}")
        for index, line in enumerate(self.setup):
            if not isinstance(line, str) or not line.strip() or any(c in line for c in "\r\n\0"):
                raise UserError(f"config key '{prefix}setup' item {index} must be one non-empty shell line")


def find_profile(name_or_path: str) -> Path:
    """A profile given as a path, or by name from the project's ``slurm/`` folder (``eval-1gpu``)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return candidate  # read_yaml names a missing file, a folder or an unreadable one
    folder = resource_dir("slurm")
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    if _PLAIN_NAME.fullmatch(name_or_path) and (folder / f"{name_or_path}.yaml").is_file():
        return folder / f"{name_or_path}.yaml"
    close = difflib.get_close_matches(name_or_path[:100], known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    shown = name_or_path if len(name_or_path) <= 60 else name_or_path[:57] + "..."
    raise UserError(f"no cluster profile named {shown!r}{hint} (known: {', '.join(known)}; or pass a .yaml path)")


def load_profile(name_or_path: str | None = None, sets: list[str] | None = None) -> ClusterProfile:
    """The profile ``--cluster`` names (defaults when None) with ``--cluster-set key=value`` applied."""
    data: dict = {}
    where = "the default cluster profile"
    if name_or_path is not None:
        path = find_profile(name_or_path)
        data, where = read_yaml(path), f"cluster profile {path}"
    try:
        return from_dict(ClusterProfile, merge(data, parse_overrides(sets or [])), prefix="cluster.")
    except UserError as err:
        raise UserError(f"{where}: {err}") from None

"""The task-adapter contract (DESIGN.md): the context adapters are built from, and the result they return."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from mec_eval.checkpoints import Encoder
from mec_eval.log import JsonLogger
from mec_eval.utils import UserError


@dataclass
class Result:
    """What a task returns; the runner adds provenance and writes result.json."""
    dataset: str
    metrics: dict[str, float]
    primary: str
    higher_is_better: bool = True
    lower_is_better_metrics: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # How the run was scaled (result.json "scale"): world_size, per_process_batch, effective_batch
    # and, for trained tasks, base_lr / lr (the scaled peak lr). Printed at start by the task.
    scale: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskContext:
    """Everything an adapter is built from (one object, not ad-hoc keyword arguments).

    ``cache_dir`` is the shared feature cache (``RUNS/.cache/features``); ``device`` is the resolved
    ``run.device``; ``rank`` / ``world_size`` describe the process group (1 process: 0 / 1).
    """
    cache_dir: Path
    quiet: bool = False
    device: str = "cpu"
    rank: int = 0
    world_size: int = 1
    logger: JsonLogger = field(default_factory=lambda: JsonLogger(None, quiet=True))


class Task(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, ctx: TaskContext): ...

    @classmethod
    def expand(cls, cfg: Any) -> list[list[str]]:
        """Extra overrides of each run ``cfg`` stands for (``[[]]``: just this one)."""
        ...

    def run(self, encoder: Encoder, cfg: Any, workdir: Path) -> Result:
        """Evaluate ``encoder``; idempotent, keeps resumable state under ``workdir``."""
        ...


class TaskBase:
    """What every adapter shares: built from a :class:`TaskContext`; runs one config unless it expands."""

    def __init__(self, ctx: TaskContext):
        self.ctx = ctx
        self.cache_dir, self.quiet = Path(ctx.cache_dir), ctx.quiet

    @classmethod
    def expand(cls, cfg: Any) -> list[list[str]]:
        if getattr(getattr(cfg, "data", None), "name", None) == "all":
            raise UserError(f"data.name=all is for the transfer tasks; task '{cls.name}' needs one dataset name")
        return [[]]

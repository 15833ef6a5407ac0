"""The task-adapter contract (DESIGN.md) and the result it returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from mec_eval.checkpoints import Encoder


@dataclass
class Result:
    """What a task returns; the runner adds provenance and writes result.json."""
    dataset: str
    metrics: dict[str, float]
    primary: str
    higher_is_better: bool = True
    lower_is_better_metrics: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Task(Protocol):
    name: ClassVar[str]
    Config: ClassVar[type]

    def run(self, encoder: Encoder, cfg: Any, workdir: Path) -> Result:
        """Evaluate ``encoder``; idempotent, keeps resumable state under ``workdir``."""
        ...

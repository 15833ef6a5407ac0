"""JSON-lines logging and progress bars that ``--quiet`` silences."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class JsonLogger:
    """Appends one JSON object per line to ``path``; echoes a short form to stderr unless quiet."""

    def __init__(self, path: str | Path | None, quiet: bool = False):
        self.path = Path(path) if path else None
        self.quiet = quiet
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, **fields) -> None:
        record = {"time": round(time.time(), 3), **fields}
        if self.path:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, default=float) + "\n")
        if not self.quiet:
            shown = " ".join(f"{k}={_short(v)}" for k, v in fields.items())
            tqdm.write(shown, file=sys.stderr)

    def info(self, message: str) -> None:
        """A human message (not a record): stderr only, unless quiet."""
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "", quiet: bool = False) -> Iterable[T]:
    """A tqdm bar on stderr, or the bare iterable when quiet."""
    if quiet:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)

"""JSON-lines logging and progress bars that ``--quiet`` silences."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")
_pending: list[str] = []  # a header line held back until the run it announces shows any output


def announce(message: str, quiet: bool = False) -> None:
    """Hold ``message`` (e.g. "run knn on X -> folder") until the first log line or progress bar.

    A command that fails on bad input before doing any work then prints only its one error line;
    :func:`drop_announcement` forgets the held line.
    """
    _pending.clear()
    if not quiet:
        _pending.append(message)


def drop_announcement() -> None:
    _pending.clear()


def _flush_announcement() -> None:
    while _pending:
        tqdm.write(_pending.pop(0), file=sys.stderr)


class JsonLogger:
    """Appends one JSON object per line to ``path``; echoes a short form to stderr unless quiet."""

    def __init__(self, path: str | Path | None, quiet: bool = False):
        self.path = Path(path) if path else None
        self.quiet = quiet
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, **fields) -> None:
        _flush_announcement()
        record = {"time": round(time.time(), 3), **fields}
        if self.path:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, default=float) + "\n")
        if not self.quiet:
            shown = " ".join(f"{k}={_short(v)}" for k, v in fields.items())
            tqdm.write(shown, file=sys.stderr)

    def records(self) -> list[dict]:
        """The records already in the file (none without one); a line torn by a kill is skipped."""
        if self.path is None or not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def info(self, message: str) -> None:
        """A human message (not a record): stderr only, unless quiet."""
        _flush_announcement()
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "", quiet: bool = False) -> Iterable[T]:
    """A tqdm bar on stderr, or the bare iterable when quiet.

    tqdm's convention for non-terminals: ``disable=None`` turns the bar off when stderr is not a
    TTY, so a redirected stderr (a SLURM log, ``2> file``) gets the JSON-line records, not the
    carriage-return updates.
    """
    _flush_announcement()
    if quiet:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, disable=None)
